"""Augmented prompting with and without (Figure 3 of Wei et al. 2022): per model shape the difference of the two
sides with a paired interval (both sides answer the same documents), and the scale from which it helps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergence import metrics
from emergence.analysis import curves, intervals
from emergence.analysis.points import ItemTable, read_samples, scale_points
from emergence.io import atomic_path

COLUMNS = ["comparison", "task", "metric", "shape", "params", "train_flops", "n_seeds", "with", "without",
           "difference", "difference_ci_low", "difference_ci_high", "difference_interval", "helps_from_flops",
           "helps_from_params"]


def select_points(points: pd.DataFrame, selector: dict, task: str) -> pd.DataFrame:
    """The scale points of one side of a comparison: a strategy, on one family or on all."""
    rows = points[(points.task == task) & (points.strategy == selector["strategy"])]
    return rows[rows.family == selector["family"]] if "family" in selector else rows


def difference_interval(items: ItemTable, task: str, metric: str, row: pd.Series, *, n_resamples: int,
                        seed: int) -> tuple[float, float, str]:
    """95% interval of with - without at one shape: a paired bootstrap over the shared documents (and over
    each side's seeds); without per-item rows Newcombe's combination of each side's own (asymmetric) bounds."""
    groups = [(row["strategy_with"], row["run_models_with"]), (row["strategy_without"], row["run_models_without"])]
    matrices = items.matrices(task, metric, groups)
    if matrices is not None:
        replicates = intervals.hierarchical_replicates(matrices, n_resamples=n_resamples, seed=seed)
        return (*intervals.percentile_interval(replicates[:, 0] - replicates[:, 1]), "paired bootstrap")
    on, off = row[f"{metric}_with"], row[f"{metric}_without"]
    diff = on - off
    down = np.hypot(on - row[f"{metric}_ci_low_with"], row[f"{metric}_ci_high_without"] - off)
    up = np.hypot(row[f"{metric}_ci_high_with"] - on, off - row[f"{metric}_ci_low_without"])
    return diff - down, diff + up, "Newcombe (unpaired)"


def augmentation_table(cells: pd.DataFrame, comparisons: list[dict], metric: str = "exact_match",
                       samples: pd.DataFrame | None = None, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per comparison x task x model shape: the metric with and without the augmentation (seed means), their
    difference with a 95% interval (`difference_interval`), and `helps_from_flops` / `helps_from_params`: the
    smallest shape from which the difference's lower bound stays above 0 for every larger shape."""
    points = scale_points(cells, samples, n_resamples=n_resamples, seed=seed)
    items = ItemTable(samples)
    rows = []
    for comparison in comparisons:
        for task in sorted(points.task.unique()):
            on = select_points(points, comparison["with"], task)
            off = select_points(points, comparison["without"], task)
            pinned = "family" in comparison["with"] or "family" in comparison["without"]
            keys = ["shape"] if pinned else ["shape", "family"]  # unpinned: compare within each family
            both = on.merge(off, on=keys, suffixes=("_with", "_without")).sort_values("params_with", ignore_index=True)
            if both.empty:
                continue
            bounds = [difference_interval(items, task, metric, row, n_resamples=n_resamples,
                                          seed=metrics.seed_for(comparison["name"], task, row["shape"], base=seed))
                      for _, row in both.iterrows()]
            diff = (both[f"{metric}_with"] - both[f"{metric}_without"]).to_numpy()
            index = curves.emergence_index(diff, np.array([b[0] for b in bounds]), baseline=0.0, margin=0.0)
            for i, row in both.iterrows():
                rows.append({
                    "comparison": comparison["name"], "task": task, "metric": metric, "shape": row["shape"],
                    "params": row["params_with"], "train_flops": row["train_flops_with"],
                    "n_seeds": int(min(row["n_seeds_with"], row["n_seeds_without"])),
                    "with": row[f"{metric}_with"], "without": row[f"{metric}_without"], "difference": diff[i],
                    "difference_ci_low": bounds[i][0], "difference_ci_high": bounds[i][1],
                    "difference_interval": bounds[i][2],
                    "helps_from_flops": both.train_flops_with[index] if index is not None else np.nan,
                    "helps_from_params": both.params_with[index] if index is not None else np.nan,
                })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_augmentation(cells_path, samples_path, comparisons: list[dict], csv_out, md_out, *, n_resamples: int,
                       seed: int) -> pd.DataFrame:
    """The augmentation table as CSV and Markdown."""
    table = augmentation_table(pd.read_parquet(cells_path), comparisons, samples=read_samples(samples_path),
                               n_resamples=n_resamples, seed=seed)
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md_out) as tmp:
        tmp.write_text(table.to_markdown(index=False, floatfmt=".3g"))
    return table
