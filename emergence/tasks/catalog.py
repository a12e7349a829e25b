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
import os
from functools import cache
from pathlib import Path

from emergence.io import write_json
from emergence.ladder import data
from emergence.tasks import bigbench

LOCAL_DATASETS = ("json", "csv", "parquet", "text", "arrow")  # datasets builders that read local files


class UnknownTask(ValueError):
    pass


@cache
def lm_eval_manager(task_dirs: tuple[str, ...] = ()):
    """lm-eval's task index (its built-in tasks plus `task_dirs`); building it takes seconds, so it is only
    built when a name is neither arithmetic nor BIG-bench."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(task_dirs) or None)


def kind_of(name: str, lm_eval_dirs=()) -> str:
    """'arithmetic', 'bigbench' or 'lm_eval'; raises UnknownTask naming close matches."""
    if name in data.OPERATIONS:
        return "arithmetic"
    if name in bigbench.task_index():
        return "bigbench"
    manager = lm_eval_manager(tuple(lm_eval_dirs))
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


def lm_eval_configs(name: str, lm_eval_dirs=()) -> list[dict]:
    """The config of an lm-eval task, or those of a group's member tasks (recursively)."""
    manager = lm_eval_manager(tuple(lm_eval_dirs))
    cfg = manager.task_index[name].cfg
    members = cfg.get("task")
    if isinstance(members, list):  # a group
        names = (m if isinstance(m, str) else m.get("task") for m in members)
        return [c for n in names if n in manager.task_index for c in lm_eval_configs(n, lm_eval_dirs)]
    return [cfg]


def lm_eval_datasets(name: str, lm_eval_dirs=()) -> set[str]:
    """The `dataset_path`s an lm-eval task or group reads."""
    return {cfg.get("dataset_path", "") for cfg in lm_eval_configs(name, lm_eval_dirs)}


def lm_eval_data_files(name: str, lm_eval_dirs=()) -> list[tuple[str, object]]:
    """The local JSON Lines files an lm-eval task or group reads (`dataset_path: json`), each with its task's
    `doc_to_target`: checked before evaluation, since `datasets` reports a bad line without naming its file."""
    files = []
    for cfg in lm_eval_configs(name, lm_eval_dirs):
        if cfg.get("dataset_path") != "json":
            continue
        data_files = (cfg.get("dataset_kwargs") or {}).get("data_files") or []
        for value in data_files.values() if isinstance(data_files, dict) else [data_files]:
            for path in [value] if isinstance(value, str) else value:
                if str(path).endswith(".jsonl"):
                    files.append((str(path), cfg.get("doc_to_target")))
    return files


def lm_eval_problem(name: str, lm_eval_dirs=()) -> str | None:
    """A message when an lm-eval task needs hub datasets that cannot be fetched from here, else None."""
    from emergence.models.hub import unreachable_reason

    remote = sorted(d for d in lm_eval_datasets(name, lm_eval_dirs) if d not in LOCAL_DATASETS)
    if not remote or os.environ.get("HF_DATASETS_OFFLINE") == "1":  # offline mode: the user has them cached
        return None
    endpoint, reason = unreachable_reason()
    if reason is None:
        return None
    return (f"task {name!r} is an lm-eval task whose data comes from the Hugging Face hub "
            f"({', '.join(remote[:3])}{', ...' if len(remote) > 3 else ''}), but {endpoint} is unreachable "
            f"({reason}). Run it where the hub "
            f"is reachable, or download the datasets there first and set HF_DATASETS_OFFLINE=1 here; the offline "
            f"default study uses generated and BIG-bench tasks only.")


def write_task(spec: dict, out_dir, source_dir=None) -> dict:
    """Write the task folder of one planned task (`StudyPlan.tasks` value); `source_dir` is the extracted
    BIG-bench task a BIG-bench (sub)task is converted from."""
    from emergence.tasks.arithmetic import write_arithmetic_task

    name, kind, settings = spec["task"], spec["kind"], spec["settings"]
    if kind == "arithmetic":
        return write_arithmetic_task(name, out_dir, **settings)  # config refuses BIG-bench-only settings here
    if kind == "bigbench":
        return bigbench.write_bigbench_task(name, source_dir, out_dir, **settings)
    return write_lm_eval_task(name, out_dir, spec["lm_eval_task_dirs"], settings.get("random_baseline"))


def write_lm_eval_task(name: str, out_dir, lm_eval_dirs, random_baseline: float | None) -> dict:
    """An lm-eval task keeps its own data and prompts: its folder only records what it is."""
    manager = lm_eval_manager(tuple(lm_eval_dirs))
    meta = {"task": name, "kind": "lm_eval", "lm_eval_task_dirs": list(lm_eval_dirs),
            "yaml": str(manager.task_index[name].yaml_path), "datasets": sorted(lm_eval_datasets(name, lm_eval_dirs)),
            "metric": "exact_match", "random_baseline": random_baseline, "fields": []}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / "task.json", meta)
    return meta
