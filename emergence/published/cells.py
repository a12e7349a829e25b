"""A `source: published` family -> cells: the numbers of result files, with every model's scale metadata.

`family_cells` reads the family's files, selects its tasks, strategies (`<k>shot` from num_fewshot), models and
checkpoints, and returns cells with the same columns as evaluated ones (per-sample columns NaN: a file holds an
aggregate), or the problems that refuse the family: a file that cannot be read, a model, task or metric the files
lack, a model without scale metadata. Config checking and the `published_cells` rule call the same function.
"""

from __future__ import annotations

import math
import re
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from emergence.aggregate import CELL_METRICS
from emergence.io import atomic_path, sha256_file
from emergence.ladder.model import training_flops
from emergence.models.families import suites
from emergence.published.readers import SCALE_KEYS, PublishedError, expand_files, read_file

DATA = Path(str(resources.files("emergence") / "data" / "published"))
COLUMNS = ("exact_match", "mc_grade", "bleu")  # where a task's paper metric goes (as in evaluated cells)
UPPER = {"exact_match": 1.0, "mc_grade": 1.0, "bleu": 100.0}
Z95 = 1.959963984540054
FLOPS_RULE = "6 x non-embedding parameters x training tokens"


@cache
def datasets() -> dict:
    """The shipped result sets (emergence/data/published/datasets.yaml)."""
    return yaml.safe_load((DATA / "datasets.yaml").read_text())


def family_files(family: dict) -> list[Path]:
    """The result files of a family: a shipped dataset's, or its `files` (folders expanded)."""
    if "dataset" in family:
        return [DATA / datasets()[family["dataset"]]["file"]]
    return expand_files(family.get("files") or [])


def file_checksums(family: dict) -> dict[str, str]:
    """{path: sha256} of the family's files (part of its key and of every cell's provenance)."""
    return {str(path): sha256_file(path) for path in family_files(family)}


def task_specs(family: dict) -> dict[str, dict]:
    """tasks: {name: metric} or {name: {metric, as, exact_match, perplexity, random_baseline, n}} -> full specs."""
    out = {}
    for task, spec in (family.get("tasks") or {}).items():
        spec = {"metric": spec} if isinstance(spec, str) else dict(spec)
        spec.setdefault("as", "bleu" if spec["metric"] == "bleu" else "exact_match")
        spec.setdefault("random_baseline", 0.0)
        out[task] = spec
    return out


def label_of(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]", "_", Path(str(name)).name)


def family_name(family: dict, record: dict) -> str:
    """The family a model is drawn with: the file's family column (e.g. ObsScaling's `Llama-2` -> Llama_2), else
    the configured family's name."""
    if "family" not in record:
        return family["name"]
    name = re.sub(r"[^A-Za-z0-9_]", "_", record["family"])
    return name if name[:1].isalpha() else f"f_{name}"


def _shown(record: dict) -> str:
    """Where a number comes from: a shipped file by its package path (and the upstream file it came from)."""
    path = Path(record["file"])
    shown = f"emergence/data/published/{path.name}" if path.parent == DATA else str(path)
    return f"{shown} ({record['source_file']})" if record.get("source_file") else shown


def _where(record: dict) -> str:
    return f"{record['file']}, {record.get('where', 'line')} {record['line']}"


def _suite_members(family: dict) -> dict[str, dict]:
    """Model name -> suite metadata for a family with `suite:` (Pythia's parameter counts and tokens per step)."""
    if not family.get("suite"):
        return {}
    suite = suites()[family["suite"]]
    out = {}
    for size in family.get("sizes") or suite["sizes"]:
        tokens = suite["train_tokens"]
        meta = {"size": size, "train_tokens": float(tokens[size] if isinstance(tokens, dict) else tokens)}
        for key in ("params", "nonembedding_params"):
            if size in suite.get(key, {}):
                meta[key] = suite[key][size]
        if "tokens_per_step" in suite:
            meta["tokens_per_step"] = suite["tokens_per_step"]
        out[suite["repo"].format(size=size)] = meta
    return out


def scale_metadata(record: dict, suite_meta: dict | None, member: dict | None, file_convention: str) -> dict:
    """params, nonembedding_params, train_tokens, train_flops, checkpoint_step and the FLOPs convention of one
    model checkpoint: the file's values, then the suite's, then the config member's (which win)."""
    meta = {k: record[k] for k in SCALE_KEYS if k in record}
    convention = file_convention if "train_flops" in meta else None
    step = record["step"]
    for source in (suite_meta or {}, member or {}):
        meta.update({k: source[k] for k in ("params", "nonembedding_params", "train_tokens") if k in source})
        if step is not None and "tokens_per_step" in source:
            meta["train_tokens"] = step * source["tokens_per_step"]
        if "train_flops" in source:
            meta["train_flops"], convention = source["train_flops"], "as given in the config"
    if "train_flops" not in meta and "nonembedding_params" in meta and "train_tokens" in meta:
        meta["train_flops"], convention = training_flops(meta["nonembedding_params"], meta["train_tokens"]), FLOPS_RULE
    per_step = (member or {}).get("tokens_per_step") or (suite_meta or {}).get("tokens_per_step")
    if step is None and per_step and "train_tokens" in meta:
        step = meta["train_tokens"] // per_step
    return {**meta, "checkpoint_step": step, "flops_convention": convention}


def select_records(family: dict, records: list[dict], strategies: list[str]) -> tuple[list[dict], list[str]]:
    """The records of the family's tasks, strategies, models and steps, or the problems with its selection."""
    where = f"published family {family['name']!r}"
    files = ", ".join(sorted({r["file"] for r in records})) or "its files"
    problems = []
    by_task = {}
    for record in records:
        by_task.setdefault(record["task"], set()).add(record["metric"])
    specs = task_specs(family)
    for task, spec in specs.items():
        if task not in by_task:
            problems.append(f"{where}: task {task!r} is not in {files}; tasks there: {', '.join(sorted(by_task))}.")
            continue
        for key in ("metric", "exact_match", "perplexity"):
            if key in spec and spec[key] not in by_task[task]:
                problems.append(f"{where}: unknown metric {spec[key]!r} for task {task!r} in {files}; its metrics "
                                f"there: {', '.join(sorted(by_task[task]))}.")
    models = {r["model"] for r in records}
    suite = _suite_members(family)
    members = {m["model"]: m for m in family.get("members") or []}
    excluded = set(family.get("exclude") or [])
    wanted = set(members) | excluded | (set(suite) if family.get("sizes") else set())
    for model in sorted(wanted - models):
        problems.append(f"{where}: model {model!r} is not in {files}; models there: "
                        f"{', '.join(sorted(models)[:12])}{', ...' if len(models) > 12 else ''}.")
    keep_models = (set(suite) | set(members) if suite or members else models) - excluded
    steps = set(family.get("steps") or [])
    selected = [r for r in records if r["task"] in specs and r["model"] in keep_models
                and r["num_fewshot"] is not None and f"{int(r['num_fewshot'])}shot" in strategies
                and (not steps or r["step"] in steps)]
    if not problems and not selected:
        problems.append(f"{where}: no result in {files} for its tasks ({', '.join(specs)}), strategies "
                        f"({', '.join(strategies)}), models and steps; check them against the file.")
    return selected, problems


def family_cells(family: dict, strategies: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Cells of one published family (one per model checkpoint x task x strategy) and the problems refusing it."""
    try:
        files = family_files(family)
        columns = datasets()[family["dataset"]].get("columns") if "dataset" in family else family.get("columns")
        records = [r for path in files for r in read_file(path, columns)]
        renamed = {spec["file_task"]: task for task, spec in task_specs(family).items() if "file_task" in spec}
        records = [{**r, "task": renamed.get(r["task"], r["task"])} for r in records]
    except PublishedError as err:
        return pd.DataFrame(), [f"published family {family['name']!r}: {err}"]
    records, problems = select_records(family, records, family.get("strategies") or strategies)
    if problems:
        return pd.DataFrame(), problems
    convention = (datasets()[family["dataset"]].get("flops_convention", "as given in the file")
                  if "dataset" in family else "as given in the file")
    sums = {str(path): sha256_file(path) for path in files}
    suite, members = _suite_members(family), {m["model"]: m for m in family.get("members") or []}
    specs = task_specs(family)
    groups = {}
    for r in records:
        groups.setdefault((r["model"], r["step"], int(r["num_fewshot"]), r["task"]), {})[r["metric"]] = r
    finals = {}
    for model, step, _, _ in groups:
        finals[model] = max(finals.get(model, -1), -1 if step is None else step)
    rows, missing = [], {}
    for (model, step, shots, task), by_metric in sorted(groups.items(), key=lambda kv: str(kv[0])):
        spec = specs[task]
        if spec["metric"] not in by_metric:
            continue
        main = by_metric[spec["metric"]]
        meta = scale_metadata(main, suite.get(model), members.get(model), convention)
        if lacking := [k for k in ("params", "train_tokens", "train_flops") if meta.get(k) is None]:
            missing.setdefault(model, (lacking, _where(main)))
            continue
        run = f"{family_name(family, main)}-{label_of(model)}"
        rows.append(cell_row(spec, by_metric, meta, model=run if step is None else f"{run}-step{int(step)}",
                             run=run, task=task, strategy=f"{shots}shot",
                             final=(-1 if step is None else step) == finals[model], sha256=sums[main["file"]]))
    for model, (lacking, where) in sorted(missing.items()):
        problems.append(f"published family {family['name']!r}: model {model!r} ({where}) has no "
                        f"{', '.join(lacking)}; give them in its members entry, e.g. members: [{{model: '{model}', "
                        f"params: ..., nonembedding_params: ..., train_tokens: ...}}] (train_flops defaults to "
                        f"{FLOPS_RULE}).")
    return (pd.DataFrame(rows), []) if not problems else (pd.DataFrame(), problems)


def cell_row(spec: dict, by_metric: dict, meta: dict, *, model: str, run: str, task: str, strategy: str, final: bool,
             sha256: str) -> dict:
    """One cell with the columns of an evaluated cell: the file's numbers where it has them, NaN for everything a
    file of aggregates cannot hold (per-sample metrics, held-out loss), and where each number comes from."""
    main = by_metric[spec["metric"]]
    row = {"model": model, "task": task, "strategy": strategy, "n": spec.get("n", np.nan),
           **{f"{m}{s}": np.nan for m in CELL_METRICS for s in ("", "_ci_low", "_ci_high")},
           "brier": np.nan, "ece": np.nan, "random_baseline": float(spec["random_baseline"]),
           "target_ce_total": np.nan, "target_tokens_mean": np.nan, "p_all_tokens": np.nan, "is_greedy": np.nan,
           "family": run.split("-")[0], "run": run, "nonembedding_params": np.nan, **meta, "seed": np.nan,
           "final_checkpoint": final, "heldout_loss": np.nan, "metric": spec["as"], "source": "published",
           "published_model": main["model"], "published_metric": spec["metric"], "published_value": main["value"],
           "published_stderr": main["stderr"], "published_file": _shown(main), "published_line": main["line"],
           "published_sha256": sha256}
    _put(row, spec["as"], main, spec.get("n"))
    if spec.get("exact_match") in by_metric and spec["as"] != "exact_match":
        _put(row, "exact_match", by_metric[spec["exact_match"]], spec.get("n"))
    if spec.get("perplexity") in by_metric:  # log perplexity = CE per target: the continuous metric of the samples
        ppl = by_metric[spec["perplexity"]]
        ce, half = math.log(ppl["value"]), Z95 * (ppl["stderr"] or np.nan) / ppl["value"]
        row.update(target_ce_per_token=ce, target_ce_per_token_ci_low=ce - half, target_ce_per_token_ci_high=ce + half,
                   target_ce_total=ce)
    return row


def _put(row: dict, column: str, record: dict, n: int | None = None) -> None:
    """A published value and its 95% interval: normal approximation from the file's stderr, else Wilson's interval
    for a proportion over the task's `n` documents, else none."""
    value, stderr = record["value"], record["stderr"]
    if stderr is not None:
        low, high = np.clip([value - Z95 * stderr, value + Z95 * stderr], 0.0, UPPER[column])
    elif n and UPPER[column] == 1.0:
        centre, spread = value + Z95**2 / (2 * n), Z95 * math.sqrt(value * (1 - value) / n + Z95**2 / (4 * n**2))
        low, high = (centre - spread) / (1 + Z95**2 / n), (centre + spread) / (1 + Z95**2 / n)
    else:
        low = high = np.nan
    row.update({column: value, f"{column}_ci_low": low, f"{column}_ci_high": high})


def write_family_cells(family: dict, strategies: list[str], out: str | Path) -> pd.DataFrame:
    cells, problems = family_cells(family, strategies)
    if problems:
        raise PublishedError("\n".join(problems))
    with atomic_path(out) as tmp:
        cells.to_parquet(tmp, index=False)
    return cells


def family_problems(i: int, family: dict, strategies: list[str]) -> list[str]:
    """Config check of a published family, down to its files' models, tasks, metrics and scale metadata."""
    where = f"models[{i}] ({family['name']})"
    problems = []
    if ("dataset" in family) == ("files" in family):
        problems.append(f"{where}: source: published reads either a shipped dataset ({', '.join(datasets())}) or "
                        f"files (lm-eval JSON, folders of it, CSV/Parquet tables); give exactly one.")
    if "columns" in family and "files" not in family:
        problems.append(f"{where}: 'columns' maps the columns of your own table in files; a shipped dataset has its "
                        f"own map.")
    if not family.get("tasks"):
        problems.append(f"{where}: source: published needs tasks, the file's metric per task, e.g. "
                        f"{{lambada_openai: acc}}.")
    for key in ("widths", "revisions"):
        if key in family:
            problems.append(f"{where}: {key!r} is not for source: published (its checkpoints are the files' steps; "
                            f"select them with 'steps').")
    for j, member in enumerate(family.get("members") or []):
        if "model" not in member or "repo" in member or "path" in member:
            problems.append(f"{where}.members[{j}]: a source: published member names its model with 'model' (its "
                            f"name in the files) only.")
    return problems or family_cells(family, strategies)[1]
