"""Scale points: final checkpoints averaged over training seeds, one per task x strategy x family x model size,
with intervals over items x seeds from the per-sample rows (or from the cells alone where there are none)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from emergence import metrics
from emergence.analysis import intervals

# metric -> higher is better. The paper's metrics (exact match, multiple-choice grade, BLEU) beside the continuous
# ones of the same samples; metrics a task does not define are NaN in its cells and skipped.
METRICS = {"exact_match": True, "mc_grade": True, "bleu": True, "target_ce_per_token": False,
           "token_edit_distance": False, "p_correct": True, "brier_choices": False}
# Bounded by the metric's chance level and 1. The others' baseline for the emergence scale is the smallest model's
# value, and their margin a share of it (CE 5% below the smallest model's), so it compares across tasks.
CHANCE_BOUNDED = ("exact_match", "mc_grade", "p_correct")
# Only where they are the task's own metric: multiple-choice grade repeats exact match on one-hot choices, and
# BLEU of short answers (arithmetic) is exact match in disguise.
PAPER_ONLY = ("mc_grade", "bleu")
SCALE_KEYS = ["task", "strategy", "family", "size"]
SCALE_COLUMNS = ["train_flops", "params", "nonembedding_params", "heldout_loss", "random_baseline"]
OPTIONAL_COLUMNS = ["target_tokens_mean", "answer_tokens_mean", "pl_greedy", "pl_sampling", "answer_ce_per_token",
                    "prompt_truncated_share",
                    *(f"chance_{m}" for m in METRICS)]
SAMPLE_KEYS = ["model", "task", "strategy", "subtask", "doc_id"]


class ItemTable:
    """Per-item values of the final checkpoints, one models x documents frame per task x strategy x metric."""

    def __init__(self, samples: pd.DataFrame | None):
        self.samples = samples
        self._frames: dict = {}

    def frame(self, task: str, strategy: str, metric: str) -> pd.DataFrame | None:
        """models x documents of one task x strategy x metric (cached), None without per-item rows."""
        if self.samples is None or metric not in self.samples:
            return None
        key = (task, strategy, metric)
        if key not in self._frames:
            sub = self.samples[(self.samples.task == task) & (self.samples.strategy == strategy)]
            self._frames[key] = sub.set_index(["model", "subtask", "doc_id"])[metric].unstack(["subtask", "doc_id"])
        return self._frames[key]

    def matrices(self, task: str, metric: str, groups: list[tuple[str, list[str]]]) -> list | None:
        """[seeds, items] per group (a strategy and its models' ids), on the documents every model answered
        (aligned across groups, so replicates pair them); None where a model has no per-item rows."""
        blocks = []
        for strategy, models in groups:
            frame = self.frame(task, strategy, metric)
            if frame is None or not models or not set(models) <= set(frame.index):
                return None
            blocks.append(frame.loc[models])
        common = blocks[0].columns
        for block in blocks[1:]:
            common = common.intersection(block.columns)
        matrices = [block[common].to_numpy(dtype=float) for block in blocks]
        keep = np.all([np.isfinite(m).all(axis=0) for m in matrices], axis=0)
        return [m[:, keep] for m in matrices] if keep.any() else None


def read_samples(path) -> pd.DataFrame | None:
    """The per-item columns the intervals need (not prompts or generations), final checkpoints only, with target
    CE per token derived as `aggregate` derives it; None when the study has no samples (published results only)."""
    present = set(pq.read_schema(path).names)
    if "final_checkpoint" not in present:
        return None
    wanted = [*SAMPLE_KEYS, "final_checkpoint", "target_logprob", "target_tokens", *METRICS]
    samples = pd.read_parquet(path, columns=[c for c in wanted if c in present])
    samples = samples[samples.final_checkpoint.astype(bool)].drop(columns="final_checkpoint")
    if "target_ce_per_token" not in samples and "target_logprob" in samples:
        samples["target_ce_per_token"] = metrics.target_ce_per_token(samples.target_logprob, samples.target_tokens)
    samples["subtask"] = samples.subtask.fillna("") if "subtask" in samples else ""
    return samples.reset_index(drop=True)


def fill_intervals(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells without a metric's interval (published results: a mean, maybe `<metric>_stderr`, maybe `n`) get
    one: proportions the exact binomial interval at `n`, else Wilson's at the n their stderr implies; other
    metrics mean +- 1.96 stderr. Without either the interval stays NaN (and the metric cannot emerge)."""
    cells = cells.copy()
    n = cells.n if "n" in cells else pd.Series(np.nan, index=cells.index)
    for metric in (m for m in METRICS if m in cells):
        low, high = f"{metric}_ci_low", f"{metric}_ci_high"
        for column in (low, high):
            if column not in cells:
                cells[column] = np.nan
        stderr = cells[f"{metric}_stderr"] if f"{metric}_stderr" in cells else pd.Series(np.nan, index=cells.index)
        missing = cells[low].isna() & cells[metric].notna()
        if missing.any():  # assigned at once: a row at a time is slow on a wide frame
            cells.loc[missing, [low, high]] = np.array([
                metrics.proportion_ci(value, n=k, stderr=se) if metric in CHANCE_BOUNDED
                else (value - 1.96 * se, value + 1.96 * se)
                for value, k, se in zip(cells.loc[missing, metric], n[missing], stderr[missing])], dtype=float)
    return cells


def scale_points(cells: pd.DataFrame, samples: pd.DataFrame | None = None, *, n_resamples: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """Final checkpoints averaged over training seeds: one row per task x strategy x family x model size.

    Each metric gets its seed mean, min and max (the spread the figures shade) and a 95% interval: with per-item
    rows a bootstrap over items x seeds (`intervals.hierarchical_replicates`), never narrower than the exact
    binomial interval of the pooled counts for 0/1 metrics; without them the cell's own interval (one seed) or
    the seed mean's t-interval widened to the cells' sampling interval (published cells: `fill_intervals`).
    `run_models` lists the seeds' model ids.
    """
    finals = fill_intervals(cells[cells.final_checkpoint.astype(bool)])
    finals["size"] = finals.run.str.replace(r"-s\d+$", "", regex=True)
    averaged = [*SCALE_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in finals)]
    finals = finals.astype(dict.fromkeys(averaged, float))
    present = [m for m in METRICS if m in finals]
    # columns as arrays and per-group means at once: pandas per group and column costs more than the statistics
    arrays = {c: finals[c].to_numpy(dtype=float) for m in present for c in (m, f"{m}_ci_low", f"{m}_ci_high")}
    models = finals.model.to_numpy() if "model" in finals else None
    groups = finals.groupby(SCALE_KEYS, sort=True)
    means = groups[averaged].mean().to_dict("index")  # NaN skipped, as Series.mean
    counts = groups["n"].sum().to_dict() if "n" in finals else {}
    items = ItemTable(samples)
    rows = []
    for key in means:  # the groups in order
        index = groups.indices[key]
        row = {**dict(zip(SCALE_KEYS, key)), "n_seeds": len(index),
               "run_models": list(models[index]) if models is not None else []}
        row["shape"] = row["size"].removeprefix(f"{row['family']}-")  # e.g. d96L2: comparable across families
        row.update(means[key])
        if counts:
            row["n"] = counts[key]
        for metric in present:
            values = arrays[metric][index]
            low, high = point_interval(items, key, metric, row["run_models"], values, arrays[f"{metric}_ci_low"][index],
                                       arrays[f"{metric}_ci_high"][index], n_resamples, seed)
            row.update({metric: values.mean(), f"{metric}_ci_low": low, f"{metric}_ci_high": high,
                        f"{metric}_min": values.min(), f"{metric}_max": values.max()})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "strategy", "family", "train_flops"], ignore_index=True)


def point_interval(items: ItemTable, key: tuple, metric: str, models: list[str], values: np.ndarray,
                   lows: np.ndarray, highs: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    """The 95% interval of one scale point's seed mean from its cells' values and intervals (see `scale_points`)."""
    matrices = items.matrices(key[0], metric, [(key[1], models)])
    if matrices is None:
        return intervals.seed_mean_interval(values, lows, highs)
    matrix = matrices[0]
    replicates = intervals.hierarchical_replicates(
        [matrix], n_resamples=n_resamples, seed=metrics.seed_for(*key, metric, base=seed))
    low, high = intervals.percentile_interval(replicates)
    if metrics.is_binary(matrix):
        exact_low, exact_high = metrics.clopper_pearson(matrix.sum(), matrix.size)
        low, high = min(low, exact_low), max(high, exact_high)
    return low, high


def line_replicates(items: ItemTable, line: pd.DataFrame, metric: str, *, n_resamples: int,
                    seed: int) -> tuple[np.ndarray, bool]:
    """[replicates, models] of one line's seed means (paired over items where the per-item rows exist, else
    normal from each point's interval), and whether they are paired."""
    task, strategy = line.task.iloc[0], line.strategy.iloc[0]
    matrices = (items.matrices(task, metric, [(strategy, models) for models in line.run_models])
                if "run_models" in line else None)
    if matrices is not None:
        return intervals.hierarchical_replicates(matrices, n_resamples=n_resamples, seed=seed), True
    return intervals.normal_replicates(line[metric], line[f"{metric}_ci_low"], line[f"{metric}_ci_high"],
                                       n_resamples=n_resamples, seed=seed), False
