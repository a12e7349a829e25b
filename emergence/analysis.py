"""Emergence statistics over models sorted by scale: where an ability appears, how sharply, whether smaller
models predict it, and whether a continuous metric of the same samples tells a smoother story (the mirage test).

Every function takes plain arrays (x = log10 training FLOPs, y = the metric, oriented so that higher is better)
so it can be tested on synthetic curves with known answers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from scipy.optimize import OptimizeWarning, curve_fit

from emergence.io import atomic_path

# metric -> higher is better. The paper's metrics (exact match, multiple-choice grade, BLEU) beside the continuous
# ones of the same samples; metrics a task does not define are NaN in its cells and skipped.
METRICS = {"exact_match": True, "mc_grade": True, "bleu": True, "target_ce_per_token": False,
           "token_edit_distance": False, "p_correct": True, "brier_choices": False}
# Bounded by the task's chance level and 1; the others have no natural chance level, so their "baseline" for the
# emergence scale is the smallest model's value (emerging = measurably better than the smallest model).
CHANCE_BOUNDED = ("exact_match", "mc_grade", "p_correct")
# Only where they are the task's own metric: multiple-choice grade repeats exact match on one-hot choices, and
# BLEU of short answers (arithmetic) is exact match in disguise.
PAPER_ONLY = ("mc_grade", "bleu")


def orientation(y: np.ndarray) -> float:
    """I = sign(argmax y - argmin y): +1 when the best model is larger than the worst (BIG-bench's I)."""
    return float(np.sign(int(np.argmax(y)) - int(np.argmin(y)))) or 1.0


def breakthroughness(y: np.ndarray) -> float:
    """BIG-bench's breakthroughness (Srivastava et al. 2022, Sec. 3.4):
    B = I * (max y - min y) / sqrt(median((y[i+1] - y[i])^2)).

    Large when the whole range is covered by a few steps and most steps are flat (a jump); about n-1 for a
    straight line sampled at n points.
    """
    y = np.asarray(y, dtype=float)
    if len(y) < 2:
        return float("nan")
    typical_step = np.sqrt(np.median(np.diff(y) ** 2))
    total = y.max() - y.min()
    if typical_step == 0:
        return float("inf") * orientation(y) if total > 0 else 0.0
    return orientation(y) * total / typical_step


def linearity(x: np.ndarray, y: np.ndarray) -> float:
    """BIG-bench's linearity (Srivastava et al. 2022, Sec. 3.4), the companion of breakthroughness: how well
    the successive gains follow the successive steps in log scale,
    L = I * sum(dy * dx) / sqrt(sum(dy^2) * sum(dx^2)), with dx = x[i+1] - x[i], dy = y[i+1] - y[i].

    This is the cosine between the gain vector and the step vector: 1 for a straight line in log scale,
    about 1/sqrt(n-1) when one step carries all the gain, 0 for no change.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = np.diff(x), np.diff(y)
    norm = np.sqrt((dy**2).sum() * (dx**2).sum())
    return float(orientation(y) * (dy * dx).sum() / norm) if norm > 0 else 0.0


def emergence_index(y: np.ndarray, ci_low: np.ndarray, baseline: float, margin: float) -> int | None:
    """Index of the first model (sorted by scale) whose 95% lower bound clears baseline + margin, and from
    which every larger model clears it too; None if no such model ("not emerged")."""
    above = np.asarray(ci_low, dtype=float) > baseline + margin
    for i in range(len(above)):
        if above[i:].all():
            return i
    return None


def _logistic(x, mid, slope):
    return 1 / (1 + np.exp(-np.clip(slope * (x - mid), -50, 50)))


def predictability_error(x: np.ndarray, y: np.ndarray, form: str, bounds: tuple[float, float] | None = None) -> float:
    """Fit y on the smaller half of the models and return the mean absolute error on the larger half.

    `form` is "linear" (y linear in log FLOPs) or "sigmoid" (a logistic in log FLOPs rising from bounds[0] to
    bounds[1], e.g. from the random baseline to 1 for exact match; only its midpoint and slope are fitted, so two
    small models suffice; NaN without bounds). An emergent ability is one the small-model fit fails to predict.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    half = len(x) // 2
    if half < 2:
        return float("nan")
    xs, ys, xl, yl = x[:half], y[:half], x[half:], y[half:]
    if form == "linear":
        slope, intercept = np.polyfit(xs, ys, 1)
        prediction = slope * xl + intercept
    elif form == "sigmoid":
        if bounds is None:
            return float("nan")
        low, high = bounds
        share = np.clip((ys - low) / (high - low), 1e-4, 1 - 1e-4)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                (mid, slope), _ = curve_fit(_logistic, xs, share, p0=(xs.max() + 1, 1.0), maxfev=20000)
            prediction = low + (high - low) * _logistic(xl, mid, slope)
        except RuntimeError:  # no fit: predict the last small model's value
            prediction = np.full_like(xl, ys[-1])
    else:
        raise ValueError(f"unknown fit form {form!r}; valid: linear, sigmoid")
    return float(np.abs(prediction - yl).mean())


def curve_statistics(x: np.ndarray, y: np.ndarray, ci_low: np.ndarray | None, baseline: float | None,
                     margin: float, bounds: tuple[float, float] | None = None) -> dict:
    """All statistics of one curve (x ascending, y oriented higher-is-better; `bounds` for the sigmoid fit)."""
    index = None if ci_low is None else emergence_index(y, ci_low, baseline, margin)
    return {
        "range": float(np.ptp(y)),
        "emergence_index": index,
        "breakthroughness": breakthroughness(y),
        "linearity": linearity(x, y),
        "predictability_error_linear": predictability_error(x, y, "linear"),
        "predictability_error_sigmoid": predictability_error(x, y, "sigmoid", bounds),
    }


def relative_error(stats: dict, form: str = "linear") -> float:
    """The small-half fit's error on the large half as a fraction of the curve's range (scale-free)."""
    return stats[f"predictability_error_{form}"] / stats["range"] if stats["range"] > 0 else 0.0


def mirage_verdict(exact_match: dict, continuous: dict, *, unpredictable: float = 0.25,
                   smooth_linearity: float = 0.8) -> dict:
    """The mirage test of Schaeffer et al. (2023) on one task: does exact match look emergent while a continuous
    metric of the same samples improves smoothly and predictably?

    - looks emergent: exact match emerges after the smallest model, and the linear fit on the smaller half
      misses the larger half by more than `unpredictable` of its range;
    - continuous smooth: the continuous metric's linearity is at least `smooth_linearity` and its small-half fit
      misses by at most `unpredictable` of its range.
    """
    looks_emergent = (exact_match["emergence_index"] or 0) > 0 and relative_error(exact_match) > unpredictable
    continuous_smooth = (continuous["linearity"] >= smooth_linearity
                         and relative_error(continuous) <= unpredictable)
    return {"looks_emergent": bool(looks_emergent), "continuous_smooth": bool(continuous_smooth),
            "mirage": bool(looks_emergent and continuous_smooth)}


SCALE_KEYS = ["task", "strategy", "family", "size"]
SCALE_COLUMNS = ["train_flops", "params", "nonembedding_params", "heldout_loss", "random_baseline"]


def scale_points(cells: pd.DataFrame) -> pd.DataFrame:
    """Final checkpoints averaged over training seeds: one row per task x strategy x family x model size.

    Each metric gets its seed mean, min and max (the spread the figures shade) and a 95% interval: with several
    seeds the t-interval of the seed mean (seed-to-seed variation dominates sampling error on small models), with
    one seed the cell's bootstrap interval over samples.
    """
    finals = cells[cells.final_checkpoint].copy()
    finals["size"] = finals.run.str.replace(r"-s\d+$", "", regex=True)
    rows = []
    for key, group in finals.groupby(SCALE_KEYS, sort=True):
        row = {**dict(zip(SCALE_KEYS, key)), "n_seeds": len(group)}
        row["shape"] = row["size"].removeprefix(f"{row['family']}-")  # e.g. d96L2: comparable across families
        row.update({column: group[column].mean() for column in SCALE_COLUMNS})
        for metric in (m for m in METRICS if m in group):
            values = group[metric].to_numpy(dtype=float)
            mean = values.mean()
            if len(values) > 1:
                half = scipy_stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
                low, high = mean - half, mean + half
            else:
                low, high = group[f"{metric}_ci_low"].iloc[0], group[f"{metric}_ci_high"].iloc[0]
            row.update({metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high,
                        f"{metric}_min": values.min(), f"{metric}_max": values.max()})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "strategy", "family", "train_flops"], ignore_index=True)


def emergence_table(cells: pd.DataFrame, *, margin: float = 0.05) -> pd.DataFrame:
    """The Table-1 analogue: one row per task x strategy x metric x family over the model sizes sorted by
    training FLOPs (seed means, see `scale_points`), with the emergence scale, breakthroughness, linearity,
    predictability and the mirage flag.

    The mirage flag of a task x strategy x family is set on all its rows: the task's paper metric (exact match,
    multiple-choice grade or BLEU) looks emergent while target cross-entropy per token (the continuous metric of
    the same samples) is smooth and predictable.
    """
    rows = []
    points = scale_points(cells)
    paper = dict(zip(cells.task, cells.metric))  # each task's own metric (exact match, grade or BLEU)
    for (task, strategy, family), sub in points.groupby(["task", "strategy", "family"], sort=True):
        sub = sub.sort_values("train_flops", ignore_index=True)
        x = np.log10(sub.train_flops.to_numpy(dtype=float))
        group_stats = {}
        for metric, higher in METRICS.items():
            if metric not in sub or sub[metric].isna().any() or (metric in PAPER_ONLY and metric != paper[task]):
                continue
            sign = 1.0 if higher else -1.0
            y = sign * sub[metric].to_numpy(dtype=float)
            ci_low = sign * sub[f"{metric}_ci_{'low' if higher else 'high'}"].to_numpy(dtype=float)
            chance = metric in CHANCE_BOUNDED
            baseline = float(sub.random_baseline.iloc[0]) if chance else y[0]
            bounds = (baseline, 1.0) if chance else None
            stats = curve_statistics(x, y, ci_low, baseline, margin, bounds)
            group_stats[metric] = stats
            index = stats["emergence_index"]
            rows.append({
                "task": task, "strategy": strategy, "metric": metric, "paper_metric": metric == paper[task],
                "family": family, "n_models": len(sub),
                "n_seeds": int(sub.n_seeds.min()),
                "emerged": index is not None,
                "emergence_flops": float(sub.train_flops[index]) if index is not None else np.nan,
                "emergence_params": float(sub.params[index]) if index is not None else np.nan,
                "breakthroughness": stats["breakthroughness"],
                "linearity": stats["linearity"],
                "predictability_error_linear": stats["predictability_error_linear"],
                "predictability_error_sigmoid": stats["predictability_error_sigmoid"],
                "relative_predictability_error": relative_error(stats),
            })
        if paper[task] not in group_stats or "target_ce_per_token" not in group_stats:
            continue  # no likelihoods (an lm-eval generative task): no mirage test
        verdict = mirage_verdict(group_stats[paper[task]], group_stats["target_ce_per_token"])
        for row in rows:
            if (row["task"], row["strategy"], row["family"]) == (task, strategy, family):
                row.update(looks_emergent=verdict["looks_emergent"], continuous_smooth=verdict["continuous_smooth"],
                           mirage=verdict["mirage"])
    return pd.DataFrame(rows)


def pl_deviation(cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell, exact match minus its p^L prediction (`p_all_tokens`): positive when greedy decoding does
    better than the chance of sampling every gold token."""
    out = cells[["model", "task", "strategy", "exact_match", "p_all_tokens"]].copy()
    out["pl_deviation"] = out.exact_match - out.p_all_tokens
    return out


def write_emergence_tables(cells_path, csv_out, md_out, tex_out, pl_out, *, margin: float) -> pd.DataFrame:
    """Table-1 analogue as CSV, Markdown and LaTeX, and the per-cell p^L deviations as CSV."""
    cells = pd.read_parquet(cells_path)
    table = emergence_table(cells, margin=margin)
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    shown = table.drop(columns=["looks_emergent", "continuous_smooth", "relative_predictability_error"])
    with atomic_path(md_out) as tmp:
        tmp.write_text(shown.to_markdown(index=False, floatfmt=".3g"))
    with atomic_path(tex_out) as tmp:
        tmp.write_text(shown.to_latex(index=False, float_format="%.3g", na_rep="--",
                                      caption="Emergence statistics per task, strategy, metric and model family.",
                                      label="tab:emergence"))
    with atomic_path(pl_out) as tmp:
        pl_deviation(cells).to_csv(tmp, index=False)
    return table


def select_points(points: pd.DataFrame, selector: dict, task: str) -> pd.DataFrame:
    """The scale points of one side of a comparison: a strategy, on one family or on all."""
    rows = points[(points.task == task) & (points.strategy == selector["strategy"])]
    return rows[rows.family == selector["family"]] if "family" in selector else rows


def augmentation_table(cells: pd.DataFrame, comparisons: list[dict], metric: str = "exact_match") -> pd.DataFrame:
    """Per comparison x task x model shape: the metric with and without the augmentation (seed means), their
    difference with a 95% interval (half-widths of the two sides' intervals combined in quadrature), and
    `helps_from_flops` / `helps_from_params`: the smallest shape from which the difference's lower bound stays
    above 0 for every larger shape (Figure 3 of Wei et al. 2022: prompting that helps only above a scale)."""
    points = scale_points(cells)
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
            half = np.hypot((both[f"{metric}_ci_high_with"] - both[f"{metric}_ci_low_with"]) / 2,
                            (both[f"{metric}_ci_high_without"] - both[f"{metric}_ci_low_without"]) / 2)
            diff = both[f"{metric}_with"] - both[f"{metric}_without"]
            index = emergence_index(diff.to_numpy(), (diff - half).to_numpy(), baseline=0.0, margin=0.0)
            for i, row in both.iterrows():
                rows.append({
                    "comparison": comparison["name"], "task": task, "metric": metric, "shape": row["shape"],
                    "params": row["params_with"], "train_flops": row["train_flops_with"],
                    "n_seeds": int(min(row["n_seeds_with"], row["n_seeds_without"])),
                    "with": row[f"{metric}_with"], "without": row[f"{metric}_without"],
                    "difference": diff[i], "difference_ci_low": diff[i] - half[i],
                    "difference_ci_high": diff[i] + half[i],
                    "helps_from_flops": both.train_flops_with[index] if index is not None else np.nan,
                    "helps_from_params": both.params_with[index] if index is not None else np.nan,
                })
    return pd.DataFrame(rows, columns=[
        "comparison", "task", "metric", "shape", "params", "train_flops", "n_seeds", "with", "without", "difference",
        "difference_ci_low", "difference_ci_high", "helps_from_flops", "helps_from_params"])


def write_augmentation(cells_path, comparisons: list[dict], csv_out, md_out) -> pd.DataFrame:
    """The augmentation table as CSV and Markdown."""
    table = augmentation_table(pd.read_parquet(cells_path), comparisons)
    with atomic_path(csv_out) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md_out) as tmp:
        tmp.write_text(table.to_markdown(index=False, floatfmt=".3g"))
    return table
