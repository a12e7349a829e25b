"""Resampling intervals over the evaluation's items (and training seeds), paired wherever two numbers were measured
on the same items: the scale points of a line share their items, and so do the two sides of a comparison.

Everything here works on plain arrays: a matrix [seeds, items] per group (a model size, or one side of a
comparison), its columns aligned on the same documents across groups.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.95
TAIL = (1 - LEVEL) / 2


def hierarchical_replicates(matrices: list[np.ndarray], *, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, groups] means of a two-level bootstrap: items resampled once per replicate and shared by
    every group (paired: a hard item is hard for every model), seeds resampled within each group (seed-to-seed
    variation and item variation both reach the interval)."""
    n_items = matrices[0].shape[1]
    if any(m.shape[1] != n_items for m in matrices):
        raise ValueError("paired replicates need the same items in every group; align the matrices on doc ids")
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, size=(n_resamples, n_items))
    out = np.empty((n_resamples, len(matrices)))
    for g, matrix in enumerate(matrices):
        per_seed = matrix[:, items].mean(axis=2)  # [seeds, replicates]
        seeds = rng.integers(0, matrix.shape[0], size=(n_resamples, matrix.shape[0]))
        out[:, g] = per_seed[seeds, np.arange(n_resamples)[:, None]].mean(axis=1)
    return out


def normal_replicates(means: np.ndarray, lows: np.ndarray, highs: np.ndarray, *, n_resamples: int,
                      seed: int) -> np.ndarray:
    """[n_resamples, groups] replicates from each group's summary alone (published cells, no per-item rows): a
    normal with the interval's half-width as 1.96 standard errors, independent across groups (unpaired)."""
    means, lows, highs = (np.asarray(a, dtype=float) for a in (means, lows, highs))
    se = (highs - lows) / (2 * stats.norm.ppf(1 - TAIL))
    return np.random.default_rng(seed).normal(means, np.nan_to_num(se), size=(n_resamples, len(means)))


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(replicates, [TAIL, 1 - TAIL])
    return float(low), float(high)


def seed_mean_interval(values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> tuple[float, float]:
    """Without per-item rows: the t-interval of the seed mean, widened to at least the seeds' mean sampling
    interval (the t-interval alone drops item variance)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    if len(values) == 1:
        return float(lows[0]), float(highs[0])
    half = stats.t.ppf(1 - TAIL, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(min(mean - half, np.mean(lows))), float(max(mean + half, np.mean(highs)))


def first_clearing(lower_bounds: np.ndarray, bar: float) -> np.ndarray:
    """Per row of [replicates, models]: the first model from which every larger one clears `bar` (the emergence
    index), or the number of models where none does."""
    above = np.asarray(lower_bounds) > bar
    from_here_on = np.flip(np.cumprod(np.flip(above, axis=1), axis=1), axis=1).astype(bool)
    return np.where(from_here_on.any(axis=1), from_here_on.argmax(axis=1), above.shape[1])


def emergence_scale_interval(flops: np.ndarray, y: np.ndarray, ci_low: np.ndarray, replicates: np.ndarray,
                             bar: float) -> tuple[float, float, str]:
    """95% interval of the emergence scale in FLOPs: the emergence rule (lower bound clears `bar`, and stays)
    applied to every replicate of the line, each model's lower bound moving with its replicate mean. Returns
    (low, high, reason); a bound is NaN, with the reason, where the line does not emerge within the models
    studied in over 2.5% of the replicates."""
    index = first_clearing(replicates - (np.asarray(y) - np.asarray(ci_low)), bar)
    n = len(flops)
    low, high = np.quantile(index, [TAIL, 1 - TAIL], method="inverted_cdf").astype(int)
    if low >= n:
        return np.nan, np.nan, "does not emerge in most resamples"
    if high >= n:
        return float(flops[low]), np.nan, "upper bound beyond the largest model"
    return float(flops[low]), float(flops[high]), ""
