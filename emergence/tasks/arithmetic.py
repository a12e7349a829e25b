"""Generated arithmetic tasks (BIG-bench phrasing) written as JSONL, task.json and plain lm-eval views.

Documents carry `question` and `answer`, and `scratchpad` where the operation has one (addition).
"""

from __future__ import annotations

from pathlib import Path

from emergence.ladder import data
from emergence.tasks.views import write_task_files


def write_arithmetic_task(task: str, out_dir: str | Path, *, n_eval: int, n_fewshot_pool: int, seed: int,
                          random_baseline: float = 0.0) -> dict:
    """Write `test.jsonl`, `fewshot.jsonl`, task.json and the plain views; return the task metadata.

    Test and few-shot items are distinct problems from the held-out part of the problem space, so neither
    overlaps any ladder training item.
    """
    if task not in data.OPERATIONS:
        raise ValueError(f"unknown arithmetic task {task!r}; valid: {', '.join(data.OPERATIONS)}")
    items = data.held_out_items(task, n_eval + n_fewshot_pool, seed)
    meta = {
        "task": task,
        "kind": "arithmetic",
        "multiple_choice": False,
        "metric": "exact_match",
        "random_baseline": random_baseline,  # free-form numeric answers: guessing scores ~0
        "prompt": {"query": data.QUERY_FORMAT, "delimiter": data.ANSWER_FORMAT.split("{")[0],
                   "separator": data.EXAMPLE_SEPARATOR, "prefix": "", "stop": [data.STOP], "answer_regex": None,
                   "max_gen_toks": None},
        "n_eval": n_eval,
        "n_fewshot_pool": n_fewshot_pool,
        "seed": seed,
    }
    return write_task_files(out_dir, {"test": items[:n_eval], "fewshot": items[n_eval:]}, meta)
