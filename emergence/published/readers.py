"""Readers of published results: lm-evaluation-harness result JSON and tables, -> one record per number.

A record is {model, step, num_fewshot, task, metric, value, stderr, file, line} plus whatever scale metadata the
file holds (family, params, nonembedding_params, train_tokens, train_flops). Results a file does not hold (an
empty field, lm-eval's "N/A") are left out: a missing result is never a 0.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

SCALE_KEYS = ("params", "nonembedding_params", "train_tokens", "train_flops")
# Columns of a table in the long layout (one number per row); step, stderr and scale are optional.
LONG_COLUMNS = ("model", "task", "metric", "value", "num_fewshot")
OPTIONAL_COLUMNS = ("step", "stderr", "source_file", "family", *SCALE_KEYS)
TABLE_SUFFIXES = (".csv", ".parquet")
NOT_METRICS = ("sample_len", "sample_count")  # lm-eval 0.4 bookkeeping beside the metrics of a task


class PublishedError(ValueError):
    """A published file that cannot be read as results, named with its file and line."""


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_line(text: str, key: str) -> int:
    """The line of the first `"key":` in a JSON text (1 when absent): where a reader should look."""
    match = re.search(rf'"{re.escape(key)}"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def model_args(args) -> dict:
    """lm-eval's model_args, a 'k=v,k=v' string (or a dict in newer versions) -> dict."""
    if isinstance(args, dict):
        return args
    return dict(part.split("=", 1) for part in (args or "").split(",") if "=" in part)


def read_lm_eval_json(path: str | Path) -> list[dict]:
    """An lm-eval result file: the old `{results, versions, config}` layout (config.num_fewshot for every task) or
    lm-eval 0.4's `results_*.json` (`acc,none` keys, per-task `n-shot`, `model_name`). The model is
    model_args' `pretrained` (else model_name), the checkpoint step its `revision=stepN`."""
    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PublishedError(f"{path}, line {err.lineno}: not valid JSON ({err.msg}); give lm-eval's result file "
                             f"(results_*.json or the old results/versions/config layout).") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise PublishedError(f"{path}, line 1: no 'results' object; this is not an lm-eval result file.")
    config = data.get("config") or {}
    args = model_args(config.get("model_args"))
    model = args.get("pretrained") or data.get("model_name")
    if not model:
        raise PublishedError(f"{path}, line {_json_line(text, 'config')}: names no model (config.model_args has no "
                             f"pretrained=..., and there is no model_name); add one or give the file as a table.")
    revision = str(args.get("revision") or "")
    step = int(revision[4:]) if re.fullmatch(r"step\d+", revision) else None
    shots, configs = data.get("n-shot") or {}, data.get("configs") or {}
    records = []
    for task, values in data["results"].items():
        num_fewshot = shots.get(task, configs.get(task, {}).get("num_fewshot", config.get("num_fewshot")))
        line = _json_line(text, task)
        for key, value in values.items():
            name, _, filter_name = key.partition(",")
            if name.endswith("_stderr") or name in NOT_METRICS or _number(value) is None:
                continue
            metric = name if filter_name in ("", "none") else key  # 0.4: `acc,none` -> acc; `exact_match,strict`
            stderr = values.get(f"{name}_stderr,{filter_name}" if filter_name else f"{name}_stderr")
            records.append({"model": model, "step": step, "num_fewshot": _number(num_fewshot), "task": task,
                            "metric": metric, "value": float(value), "stderr": _number(stderr),
                            "file": str(path), "line": line, "where": "line"})
    return records


def _column_spec(spec) -> tuple[str, float]:
    """A column map entry: 'Column' or {column: 'Column', scale: 1e9} -> (column, factor)."""
    return (spec, 1.0) if isinstance(spec, str) else (spec["column"], float(spec.get("scale", 1.0)))


def read_table(path: str | Path, columns: dict | None = None) -> list[dict]:
    """A CSV or Parquet table. Long layout: one number per row in columns model, task, metric, value, num_fewshot
    (and optionally step, stderr, source_file, family, scale). Wide layout (one row per model): `columns`
    maps model (and optionally step, family, scale keys) to the table's columns, and `results` maps each result
    column to its {task, metric, num_fewshot}."""
    path = Path(path)
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise PublishedError(f"{path}: cannot be read as a {path.suffix[1:].upper()} table ({err}).") from err
    first_line = 2 if path.suffix == ".csv" else 1  # CSV: the header is line 1
    where = "line" if path.suffix == ".csv" else "row"
    if columns and columns.get("results"):
        return _wide_records(table, path, columns, first_line, where)
    if missing := [c for c in LONG_COLUMNS if c not in table]:
        raise PublishedError(f"{path}: no column {missing[0]!r}; a long table has columns "
                             f"{', '.join(LONG_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}), or give a "
                             f"column map with `columns: {{model: ..., results: {{<column>: {{task, metric, "
                             f"num_fewshot}}}}}}`.")
    records = []
    for i, row in enumerate(table.to_dict("records")):
        value = _number(row["value"])
        if value is None:
            continue
        record = {"model": row["model"], "task": row["task"], "metric": row["metric"], "value": value,
                  "step": _number(row.get("step")), "num_fewshot": _number(row["num_fewshot"]),
                  "stderr": _number(row.get("stderr")), "file": str(path), "line": first_line + i, "where": where}
        if isinstance(row.get("source_file"), str):
            record["source_file"] = row["source_file"]
        records.append({**record, **_scale(row, {k: k for k in (*SCALE_KEYS, "family") if k in table})})
    return records


def _scale(row: dict, mapping: dict) -> dict:
    out = {}
    for key, spec in mapping.items():
        column, factor = _column_spec(spec)
        if key == "family":
            if isinstance(row.get(column), str) and row[column]:
                out["family"] = row[column]
        elif (value := _number(row.get(column))) is not None:
            out[key] = value * factor
    return out


def _wide_records(table: pd.DataFrame, path: Path, columns: dict, first_line: int, where: str) -> list[dict]:
    named = {key: spec for key, spec in columns.items() if key != "results"}
    for spec in [*named.values(), *columns["results"]]:
        column = _column_spec(spec)[0]
        if column not in table:
            raise PublishedError(f"{path}: the column map names {column!r}, which the table does not have "
                                 f"(columns: {', '.join(map(str, table.columns))}).")
    if "model" not in named:
        raise PublishedError(f"{path}: the column map needs `model: <column naming each model>`.")
    model_column = _column_spec(named["model"])[0]
    step_column = _column_spec(named["step"])[0] if "step" in named else None
    meta_map = {k: v for k, v in named.items() if k in (*SCALE_KEYS, "family")}
    records = []
    for i, row in enumerate(table.to_dict("records")):
        meta = _scale(row, meta_map)
        for column, spec in columns["results"].items():
            value = _number(row[column])
            if value is None:
                continue  # an empty field: no such result
            records.append({"model": row[model_column], "task": spec["task"], "metric": spec["metric"],
                            "value": value, "step": _number(row[step_column]) if step_column else None,
                            "num_fewshot": _number(spec.get("num_fewshot")), "stderr": None, "file": str(path),
                            "line": first_line + i, "where": where, **meta})
    return records


def read_file(path: str | Path, columns: dict | None = None) -> list[dict]:
    """Any published file: lm-eval JSON or a table, by its suffix."""
    path = Path(path)
    if path.suffix == ".json":
        return read_lm_eval_json(path)
    if path.suffix in TABLE_SUFFIXES:
        return read_table(path, columns)
    raise PublishedError(f"{path}: unknown kind of file; give lm-eval result JSON (.json) or a table "
                         f"({', '.join(TABLE_SUFFIXES)}).")


def expand_files(paths: list[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the lm-eval JSON files under it (an lm-eval --output_path)."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("*.json"))
            if not found:
                raise PublishedError(f"{path}: a folder without lm-eval result files (*.json).")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise PublishedError(f"{path}: no such file or folder; give lm-eval result JSON files, a folder of them "
                                 f"or a CSV/Parquet table.")
    return out
