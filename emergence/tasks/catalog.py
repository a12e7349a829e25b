"""Task names -> where their data comes from, checked before any work starts.

A configured name is, in this order of lookup:
- a generated arithmetic task (`addition_3digit`, ...; `emergence.ladder.data.OPERATIONS`);
- a BIG-bench 1.0.0 JSON task or subtask (`word_unscrambling`, `modified_arithmetic`, which expands into its
  subtasks, or one subtask `modified_arithmetic.three_digit_addition_control`);
- an lm-eval task or group (`truthfulqa_mc1`, `mmlu`, `wic`, or one from a folder in `lm_eval_task_dirs`).
Unknown names fail with the closest matches from all three.
"""

from __future__ import annotations

import difflib

from emergence.ladder import data
from emergence.tasks import bigbench, lm_eval_tasks
from emergence.tasks.arithmetic import write_arithmetic_task


class UnknownTask(ValueError):
    pass


def kind_of(name: str, lm_eval_dirs=()) -> str:
    """'arithmetic', 'bigbench' or 'lm_eval'; raises UnknownTask naming close matches."""
    if name in data.OPERATIONS:
        return "arithmetic"
    if name in bigbench.task_index():
        return "bigbench"
    manager = lm_eval_tasks.lm_eval_manager(tuple(lm_eval_dirs))
    if name in manager.all_tasks:
        return "lm_eval"
    close = difflib.get_close_matches(name, [*data.OPERATIONS, *bigbench.task_index(), *manager.all_tasks],
                                      n=4, cutoff=0.6)
    raise UnknownTask(
        f"unknown task {name!r}: not a generated arithmetic task ({', '.join(data.OPERATIONS)}), a BIG-bench "
        f"{bigbench.VERSION} JSON task or subtask, or an lm-eval task"
        + (f". Did you mean {', '.join(map(repr, close))}?" if close else "."))


def expand(name: str, kind: str) -> list[str]:
    """The tasks a configured name stands for (a BIG-bench parent -> its subtasks)."""
    return bigbench.expand(name) if kind == "bigbench" else [name]


def write_task(spec: dict, out_dir, source_dir=None) -> dict:
    """Write the task folder of one planned task (`StudyPlan.tasks` value); `source_dir` is the extracted
    BIG-bench task a BIG-bench (sub)task is converted from."""
    name, kind, settings = spec["task"], spec["kind"], spec["settings"]
    if kind == "arithmetic":
        return write_arithmetic_task(name, out_dir, **settings)  # config refuses BIG-bench-only settings here
    if kind == "bigbench":
        return bigbench.write_bigbench_task(name, source_dir, out_dir, **settings)
    return lm_eval_tasks.write_lm_eval_task(name, out_dir, spec["lm_eval_task_dirs"], settings.get("random_baseline"))
