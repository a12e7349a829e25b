"""lm-eval's own tasks and groups (`truthfulqa_mc1`, `mmlu`, or one from a folder in `lm_eval_task_dirs`): its
task index, the configs and data a task reads, and the task folder that records one."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from emergence.io import write_json
from emergence.models.hub import unreachable_reason

LOCAL_DATASETS = ("json", "csv", "parquet", "text", "arrow")  # datasets builders that read local files


@cache
def lm_eval_manager(task_dirs: tuple[str, ...] = ()):
    """lm-eval's task index (its built-in tasks plus `task_dirs`); building it takes seconds, so the catalog
    builds it only for a name that is neither arithmetic nor BIG-bench."""
    from lm_eval.tasks import TaskManager  # heavy (seconds); config checks import this module at DAG time

    return TaskManager(include_path=list(task_dirs) or None)


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


def write_lm_eval_task(name: str, out_dir, lm_eval_dirs, random_baseline: float | None) -> dict:
    """An lm-eval task keeps its own data and prompts: its folder only records what it is."""
    manager = lm_eval_manager(tuple(lm_eval_dirs))
    meta = {"task": name, "kind": "lm_eval", "lm_eval_task_dirs": list(lm_eval_dirs),
            "yaml": str(manager.task_index[name].yaml_path), "datasets": sorted(lm_eval_datasets(name, lm_eval_dirs)),
            "metric": "exact_match", "random_baseline": random_baseline, "fields": []}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / "task.json", meta)
    return meta
