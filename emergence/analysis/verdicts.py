"""The mirage test of Schaeffer et al. (2023) on one line (a task x strategy x family over model sizes).

Their argument: per-token cross-entropy falls as a power law in compute (a straight line in log CE vs log FLOPs),
and exact match of an L-token answer is about p^L with p = exp(-CE), so a smooth fall of CE turns into a sharp
rise of exact match on a log-FLOPs axis. The verdict follows it step by step:

1. enough models to judge (4: the small-half fit needs 2 models and 2 to predict), else `undetermined`;
2. the paper metric emerged (its 95% lower bound clears chance + margin and stays), else `not emerged` where
   every upper bound lies within the margin of chance, `undetermined` (intervals too wide) where not;
3. it looks like a jump: emerged after the smallest model and the small-half linear fit misses the larger half by
   more than a quarter of the range, else `no jump`;
4. a continuous metric of the same samples exists (else `undetermined`: no continuous metric), transformed as the
   argument uses it: log CE per token (answer and stop only where the strategy writes a trace) against log FLOPs;
   the Brier score for multiple choice;
5. it is smooth: its small-half fit predicts the larger half within a quarter of its range, else `real jump`;
6. for exact match, p^L explains the jump: chance + (1 - chance) exp(-L CE(x)) with CE(x) the fitted power law
   and one fitted exponent L misses exact match by at most a quarter of its range: `mirage`; else
   `undetermined` (smooth CE whose p^L does not reproduce exact match).
"""

from __future__ import annotations

import numpy as np

from emergence.analysis import curves

MIN_MODELS = 4
UNPREDICTABLE = 0.25  # share of a curve's range a fit may miss by and still "predict" it
EXPONENT_GRID = np.geomspace(0.05, 200, 800)  # candidate L for the p^L fit (deterministic grid search)
# paper metric -> continuous metrics of the same samples, preferred first, and their transformation
CONTINUOUS = {"exact_match": ("answer_ce_per_token", "target_ce_per_token"),
              "bleu": ("answer_ce_per_token", "target_ce_per_token"),
              "mc_grade": ("brier_choices", "target_ce_per_token")}
LOG_SCALE = ("answer_ce_per_token", "target_ce_per_token")


def pick_continuous(paper_metric: str, available: dict) -> tuple[str | None, np.ndarray | None]:
    """The first continuous metric of `CONTINUOUS[paper_metric]` with a finite, positive value for every model."""
    for name in CONTINUOUS.get(paper_metric, ()):
        values = available.get(name)
        if values is not None and np.isfinite(values).all() and (name not in LOG_SCALE or (values > 0).all()):
            return name, np.asarray(values, dtype=float)
    return None, None


def transformed(name: str, values: np.ndarray) -> np.ndarray:
    """Higher-is-better continuous curve in the space where a power law is a line: -log CE, or -Brier."""
    return -np.log(values) if name in LOG_SCALE else -values


def pl_fit(x: np.ndarray, exact_match: np.ndarray, ce: np.ndarray, chance: float) -> tuple[float, float]:
    """Fit exact match as chance + (1 - chance) exp(-L CE_fit(x)), CE_fit the power law through all models;
    returns (L, mean absolute error)."""
    slope, intercept = np.polyfit(x, np.log(ce), 1)
    ce_fit = np.exp(slope * x + intercept)
    predicted = chance + (1 - chance) * np.exp(-np.outer(EXPONENT_GRID, ce_fit))
    errors = np.abs(predicted - exact_match).mean(axis=1)
    best = int(errors.argmin())
    return float(EXPONENT_GRID[best]), float(errors[best])


def mirage_verdict(x: np.ndarray, paper: dict, continuous: dict, *, paper_metric: str, chance: float,
                   margin: float) -> dict:
    """The verdict on one line: x = log10 FLOPs ascending; `paper` = {"y", "low", "high"} of the paper metric;
    `continuous` = {metric name: values per model} (NaN where a model lacks it); `chance` and `margin` the
    paper metric's baseline and margin (`tables.emergence_bar`: for BLEU, which has no chance level, the smallest
    model's value and a share of it)."""
    x = np.asarray(x, dtype=float)
    y, low, high = (np.asarray(paper[k], dtype=float) for k in ("y", "low", "high"))
    out = {"verdict": "undetermined", "verdict_reason": "", "looks_emergent": False, "continuous_smooth": False,
           "continuous_metric": "", "continuous_fit_error": np.nan, "pl_exponent": np.nan, "pl_fit_error": np.nan}
    if len(x) < MIN_MODELS:
        return {**out, "verdict_reason": f"too few models: {len(x)} < {MIN_MODELS} (the small-half fit needs 2 "
                                         "models and 2 more to predict)"}
    index = curves.emergence_index(y, low, chance, margin)
    if index is None:
        if (high <= chance + margin).all():
            return {**out, "verdict": "not emerged",
                    "verdict_reason": "every model's 95% upper bound is within the margin of chance"}
        return {**out, "verdict_reason": "intervals too wide: neither clearly above nor clearly at chance"}
    paper_stats = curves.curve_statistics(x, y, None, None, margin)
    jump_error = curves.relative_error(paper_stats)
    out["looks_emergent"] = bool(index > 0 and jump_error > UNPREDICTABLE)
    if not out["looks_emergent"]:
        where = "above chance from the smallest model" if index == 0 else (
            f"the small-half fit predicts the larger half within {jump_error:.0%} of the range")
        return {**out, "verdict": "no jump", "verdict_reason": where}
    name, values = pick_continuous(paper_metric, continuous)
    if name is None:
        return {**out, "verdict_reason": "no continuous metric"}
    z = transformed(name, values)
    z_stats = curves.curve_statistics(x, z, None, None, margin)
    fit_error = curves.relative_error(z_stats)
    out.update(continuous_metric=name, continuous_fit_error=fit_error,
               continuous_smooth=bool(fit_error <= UNPREDICTABLE))
    space = "log CE vs log FLOPs" if name in LOG_SCALE else f"{name} vs log FLOPs"
    if not out["continuous_smooth"]:
        return {**out, "verdict": "real jump",
                "verdict_reason": f"{space} jumps too: its small-half fit misses by {fit_error:.0%} of its range"}
    if paper_metric != "exact_match" or name not in LOG_SCALE:
        return {**out, "verdict": "mirage", "verdict_reason": f"{space} is smooth (fit error {fit_error:.0%})"}
    exponent, pl_error = pl_fit(x, y, values, chance)
    relative = pl_error / np.ptp(y)
    out.update(pl_exponent=exponent, pl_fit_error=relative)
    if relative > UNPREDICTABLE:
        return {**out, "verdict_reason": f"{space} is smooth but its p^L misses exact match by {relative:.0%}"}
    return {**out, "verdict": "mirage",
            "verdict_reason": f"{space} is a power law (fit error {fit_error:.0%}) and p^L with L = {exponent:.2g} "
                              f"reproduces exact match (error {relative:.0%} of its range)"}
