"""Generated arithmetic tasks (BIG-bench phrasing) written as JSONL, task.json and plain lm-eval views.

Documents carry `question` and `answer`, and `scratchpad` where the operation has one (addition).
"""

from __future__ import annotations

import json
from pathlib import Path

from emergence.io import atomic_path, sha256_file, write_json
from emergence.ladder import data
from emergence.strategies import load_strategy
from emergence.tasks.views import write_views


def write_arithmetic_task(task: str, out_dir: str | Path, *, n_eval: int, n_fewshot_pool: int, seed: int) -> dict:
    """Write `test.jsonl`, `fewshot.jsonl`, one YAML per view and `task.json`; return the task metadata.

    Test and few-shot items are distinct problems from the held-out part of the problem space, so neither
    overlaps any ladder training item.
    """
    if task not in data.OPERATIONS:
        raise ValueError(f"unknown arithmetic task {task!r}; valid: {', '.join(data.OPERATIONS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = data.held_out_items(task, n_eval + n_fewshot_pool, seed)
    splits = {"test": items[:n_eval], "fewshot": items[n_eval:]}
    for split, records in splits.items():
        with atomic_path(out_dir / f"{split}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    meta = {
        "task": task,
        "kind": "arithmetic",
        "fields": sorted(items[0]),
        "metric": "exact_match",
        "random_baseline": 0.0,  # free-form numeric answers: guessing scores ~0
        "n_eval": n_eval,
        "n_fewshot_pool": n_fewshot_pool,
        "seed": seed,
        "checksums": {f"{split}.jsonl": sha256_file(out_dir / f"{split}.jsonl") for split in splits},
    }
    write_json(out_dir / "task.json", meta)
    write_views(out_dir, load_strategy("0shot"), out_dir)  # plain views, for running lm-eval on the task directly
    return meta
