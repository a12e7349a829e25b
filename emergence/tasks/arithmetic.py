"""Generated arithmetic tasks (BIG-bench phrasing) written as JSONL plus lm-eval task YAMLs.

Each task gets two lm-eval views over the same documents and the same few-shot exemplars:
`<task>_gen` (generate_until, exact match) and `<task>_ll` (loglikelihood of the gold answer).
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import yaml

from emergence.io import atomic_path, sha256_file, write_json
from emergence.ladder import data

VIEWS = {"gen": "generate_until", "ll": "loglikelihood"}


def jinja(fmt: str) -> str:
    """`"Q: {question}"` -> `"Q: {{question}}"`: one prompt format serves training and lm-eval."""
    return fmt.replace("{", "{{").replace("}", "}}")


def view_task_name(task: str, view: str) -> str:
    return f"{task}_{view}"


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

    for view, output_type in VIEWS.items():
        template = resources.files("emergence.tasks") / "templates" / f"{output_type}.yaml"
        shutil.copyfile(template, out_dir / f"_{output_type}.yaml")
        spec = {
            "include": f"_{output_type}.yaml",
            "task": view_task_name(task, view),
            "dataset_path": "json",
            "dataset_kwargs": {
                "data_files": {split: str((out_dir / f"{split}.jsonl").resolve()) for split in splits}
            },
            "test_split": "test",
            "fewshot_split": "fewshot",
            "doc_to_text": jinja(data.QUERY_FORMAT),
            "doc_to_target": jinja(data.ANSWER_FORMAT),
            "target_delimiter": "",  # the answer format carries its own leading space
            "fewshot_delimiter": data.EXAMPLE_SEPARATOR,
        }
        with atomic_path(out_dir / f"{view_task_name(task, view)}.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))

    meta = {
        "task": task,
        "kind": "arithmetic",
        "views": {view: view_task_name(task, view) for view in VIEWS},
        "metric": "exact_match",
        "random_baseline": 0.0,  # free-form numeric answers: guessing scores ~0
        "n_eval": n_eval,
        "n_fewshot_pool": n_fewshot_pool,
        "seed": seed,
        "checksums": {f"{split}.jsonl": sha256_file(out_dir / f"{split}.jsonl") for split in splits},
    }
    write_json(out_dir / "task.json", meta)
    return meta
