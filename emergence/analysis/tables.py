"""The analysis tables: the Table-1 analogue with verdicts (`emergence_table`), the p^L check per cell
(`pl_deviation`) and augmented prompting with and without (`augmentation_table`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from emergence import metrics
from emergence.analysis import curves, intervals
from emergence.analysis.points import (
    CHANCE_BOUNDED,
    METRICS,
    PAPER_ONLY,
    ItemTable,
    line_replicates,
    read_samples,
    scale_points,
)
from emergence.analysis.verdicts import mirage_verdict
from emergence.io import atomic_path

log = logging.getLogger(__name__)
LINE_KEYS = ["task", "strategy", "family"]
VERDICT_COLUMNS = ["verdict", "verdict_reason", "mirage", "looks_emergent", "continuous_smooth", "continuous_metric",
                   "continuous_fit_error", "pl_exponent", "pl_fit_error", "pl_greedy_gap", "pl_sampling_gap"]


def chance_level(line: pd.DataFrame, metric: str) -> float:
    """The metric's own chance level (`chance_<metric>` from aggregate; the task's random baseline for cells
    without it); NaN for metrics without one."""
    column = f"chance_{metric}"
    if column in line and line[column].notna().all():
        return float(line[column].mean())
    return float(line.random_baseline.mean()) if metric in CHANCE_BOUNDED else np.nan


def emergence_bar(metric: str, y: np.ndarray, chance: float, margin: float) -> tuple[float, float]:
    """(baseline, margin) in the oriented metric's units: chance + margin for chance-bounded metrics; for the
    others the smallest model's value and `margin` of its magnitude (CE 5% below the smallest model's), a
    relative margin that compares across tasks, unlike nats or edits."""
    if metric in CHANCE_BOUNDED:
        return chance, margin
    return float(y[0]), margin * abs(float(y[0]))


def metric_rows(line: pd.DataFrame, items: ItemTable, metric: str, paper: str, margin: float, *,
                n_resamples: int, seed: int) -> dict:
    """One row of the emergence table: a metric's curve statistics and emergence scale with its interval."""
    higher = METRICS[metric]
    sign = 1.0 if higher else -1.0
    y = sign * line[metric].to_numpy(dtype=float)
    ci_low = sign * line[f"{metric}_ci_{'low' if higher else 'high'}"].to_numpy(dtype=float)
    half_widths = (line[f"{metric}_ci_high"] - line[f"{metric}_ci_low"]).to_numpy(dtype=float) / 2
    chance = chance_level(line, metric)
    baseline, step = emergence_bar(metric, y, chance, margin)
    bounds = (chance, 1.0) if metric in CHANCE_BOUNDED else None
    stats = curves.curve_statistics(np.log10(line.train_flops.to_numpy(dtype=float)), y, ci_low, baseline, step,
                                    bounds, resolution=float(np.nanmean(half_widths)))
    index = stats["emergence_index"]
    flops = line.train_flops.to_numpy(dtype=float)
    low = high = np.nan
    if index is None:
        reason = "not emerged"
    else:
        replicates, paired = line_replicates(items, line, metric, n_resamples=n_resamples,
                                             seed=metrics.seed_for(*line[LINE_KEYS].iloc[0], metric, base=seed))
        low, high, reason = intervals.emergence_scale_interval(flops, y, ci_low, sign * replicates, baseline + step)
        if not paired:
            reason = "; ".join(filter(None, [reason, "unpaired: from each model's interval (no per-item rows)"]))
    return {
        "metric": metric, "paper_metric": metric == paper, "n_models": len(line), "n_seeds": int(line.n_seeds.min()),
        "chance": chance, "emergence_bar": sign * (baseline + step), "emerged": index is not None,
        "emergence_flops": flops[index] if index is not None else np.nan,
        "emergence_flops_ci_low": low, "emergence_flops_ci_high": high, "emergence_flops_ci_reason": reason,
        "emergence_params": float(line.params.iloc[index]) if index is not None else np.nan,
        "breakthroughness": stats["breakthroughness"], "breakthroughness_line": stats["breakthroughness_line"],
        "breakthroughness_step": stats["breakthroughness_step"], "linearity": stats["linearity"],
        "predictability_error_linear": stats["predictability_error_linear"],
        "predictability_error_sigmoid": stats["predictability_error_sigmoid"],
        "relative_predictability_error": curves.relative_error(stats),
    }


def line_verdict(line: pd.DataFrame, paper: str, margin: float) -> dict:
    """The mirage verdict of one line (see `verdicts`), with the direct p^L gaps: mean |exact match - p^L| over
    the models under greedy (answer and stop all argmax) and under sampling decoding."""
    if paper not in line or line[paper].isna().any():
        return {"verdict": "undetermined", "verdict_reason": f"no {paper} for every model", "mirage": False}
    continuous = {name: line[name].to_numpy(dtype=float) for name in ("answer_ce_per_token", "target_ce_per_token",
                                                                      "brier_choices") if name in line}
    baseline, step = emergence_bar(paper, line[paper].to_numpy(dtype=float), chance_level(line, paper), margin)
    verdict = mirage_verdict(np.log10(line.train_flops.to_numpy(dtype=float)),
                             {"y": line[paper], "low": line[f"{paper}_ci_low"], "high": line[f"{paper}_ci_high"]},
                             continuous, paper_metric=paper, chance=baseline, margin=step)
    gaps = {f"{name}_gap": float((line[paper] - line[name]).abs().mean()) if name in line else np.nan
            for name in ("pl_greedy", "pl_sampling")}
    return {**verdict, **gaps, "mirage": verdict["verdict"] == "mirage"}


def emergence_table(cells: pd.DataFrame, samples: pd.DataFrame | None = None, *, margin: float = 0.05,
                    n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The Table-1 analogue: one row per task x strategy x metric x family over the model sizes sorted by
    training FLOPs (seed means, see `scale_points`): emergence scale with its interval, breakthroughness beside
    what a line and a step score, linearity, predictability, and the line's verdict (on all its rows)."""
    rows = []
    points = scale_points(cells, samples, n_resamples=n_resamples, seed=seed)
    items = ItemTable(samples)
    paper = dict(zip(cells.task, cells.metric))  # each task's own metric (exact match, grade or BLEU)
    for key, line in points.groupby(LINE_KEYS, sort=True):
        line = line.sort_values("train_flops", ignore_index=True)
        verdict = line_verdict(line, paper[key[0]], margin)
        truncated = float(line.prompt_truncated_share.max()) if "prompt_truncated_share" in line else np.nan
        if truncated > 0:
            log.warning("%s: %.0f%% of prompts exceed the context window and were left-truncated", key, 100 * truncated)
        for metric in METRICS:
            if metric not in line or line[metric].isna().any() or (metric in PAPER_ONLY and metric != paper[key[0]]):
                continue
            rows.append({**dict(zip(LINE_KEYS, key)), **metric_rows(line, items, metric, paper[key[0]], margin,
                                                                    n_resamples=n_resamples, seed=seed),
                         **verdict, "prompt_truncated_share": truncated})
    return pd.DataFrame(rows)


def pl_deviation(cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell, exact match beside its two p^L predictions: `pl_greedy` (share of documents whose answer and
    stop tokens are all the argmax: greedy decoding's own prediction) and `pl_sampling` (mean probability of
    sampling every gold token); the deviations are exact match minus each."""
    columns = ["model", "task", "strategy", "exact_match", "pl_greedy", "pl_sampling", "answer_ce_per_token",
               "target_ce_per_token"]
    out = cells.reindex(columns=columns).copy()
    if out.pl_sampling.isna().all() and "p_all_tokens" in cells:
        out["pl_sampling"] = cells.p_all_tokens
    out["pl_greedy_deviation"] = out.exact_match - out.pl_greedy
    out["pl_sampling_deviation"] = out.exact_match - out.pl_sampling
    return out


def write_emergence_tables(cells_path, samples_path, csv_out, md_out, tex_out, pl_out, *, margin: float,
                           n_resamples: int, seed: int) -> pd.DataFrame:
    """Table-1 analogue as CSV, Markdown and LaTeX, and the per-cell p^L deviations as CSV."""
    cells = pd.read_parquet(cells_path)
    table = emergence_table(cells, read_samples(samples_path), margin=margin, n_resamples=n_resamples, seed=seed)
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    shown = table[[*LINE_KEYS, "metric", "emerged", "emergence_flops", "emergence_flops_ci_low",
                   "emergence_flops_ci_high", "breakthroughness", "breakthroughness_line", "linearity",
                   "relative_predictability_error", "verdict"]]
    with atomic_path(md_out) as tmp:
        tmp.write_text(shown.to_markdown(index=False, floatfmt=".3g"))
    with atomic_path(tex_out) as tmp:
        tmp.write_text(shown.to_latex(index=False, float_format="%.3g", na_rep="--",
                                      caption="Emergence statistics per task, strategy, metric and model family.",
                                      label="tab:emergence"))
    with atomic_path(pl_out) as tmp:
        pl_deviation(cells).to_csv(tmp, index=False)
    return table
