"""Forecasts scored against held-out scale: fit on the models up to a cut-off (the smaller half), predict every
larger model's paper metric and the emergence scale, and score the predictions against what the larger models did.

Forecasters, side by side:
- `linear`: the metric linear in log FLOPs;
- `logistic`: a logistic in log FLOPs from the metric's chance level to 1 (midpoint and slope fitted);
- `pl`: the continuous metric's power law (log CE linear in log FLOPs) mapped through p^L: chance + (1 - chance)
  exp(-L CE), L the answer's tokens with its stop (exact match only: Schaeffer et al.'s argument as a forecast).
Each prediction's 95% interval combines the fit's band (refits on replicates of the fitted models' points drawn
within their intervals, fixed seed) with the held-out model's own sampling half-width in quadrature, clipped to
[0, 1] for proportions: a prediction interval for what that model measures. Coverage is the share of held-out
models inside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emergence import metrics
from emergence.analysis import curves, intervals
from emergence.analysis.points import CHANCE_BOUNDED, read_samples, scale_points
from emergence.analysis.tables import LINE_KEYS, chance_level, emergence_bar
from emergence.analysis.verdicts import LOG_SCALE, MIN_MODELS, pick_continuous
from emergence.io import atomic_path

FORECASTERS = ("linear", "logistic", "pl")
GRID_POINTS = 200  # log-FLOPs grid between the cut-off and the largest model for the predicted emergence scale
FORECAST_RESAMPLES = 200


def predict(form: str, xs: np.ndarray, ys: np.ndarray, x_new: np.ndarray, *, chance: float,
            ce: np.ndarray | None, tokens: float) -> np.ndarray:
    """One forecaster's prediction at x_new from the fitted models (xs, ys, their continuous metric `ce`); ys and
    ce one curve, or [replicates, points] for one fit per row (see `curves.fit_predict`)."""
    if form == "linear":
        return curves.fit_predict(xs, ys, x_new, "linear")
    if form == "logistic":
        return curves.fit_predict(xs, ys, x_new, "sigmoid", (chance, 1.0) if np.isfinite(chance) else None)
    if ce is None or not np.isfinite(tokens):
        return np.full(np.shape(ys)[:-1] + (len(x_new),), np.nan)
    log_ce = curves.fit_predict(xs, np.log(ce), x_new, "linear")
    return chance + (1 - chance) * np.exp(-tokens * np.exp(log_ce))


def crossing(x_grid: np.ndarray, curve: np.ndarray, bar: float) -> np.ndarray | float:
    """FLOPs where a predicted curve (or each row of [replicates, grid]) clears `bar` and stays above it to the
    end of the grid; NaN if it does not."""
    index = intervals.first_clearing(np.atleast_2d(curve), bar)
    flops = np.where(index < len(x_grid), 10 ** x_grid[np.minimum(index, len(x_grid) - 1)], np.nan)
    return flops if np.ndim(curve) == 2 else float(flops[0])


def forecast_line(line: pd.DataFrame, paper: str, margin: float, *, seed: int) -> tuple[dict, list[dict]]:
    """Forecast one line's larger half from its smaller half: (summary, per held-out model rows). The band's
    replicates are fitted all at once (`predict` on [replicates, points])."""
    x = np.log10(line.train_flops.to_numpy(dtype=float))
    y = line[paper].to_numpy(dtype=float)
    low, high = line[f"{paper}_ci_low"].to_numpy(dtype=float), line[f"{paper}_ci_high"].to_numpy(dtype=float)
    cut = len(x) // 2
    held = len(x) - cut
    chance = chance_level(line, paper) if paper in CHANCE_BOUNDED else np.nan
    bar = sum(emergence_bar(paper, y, chance, margin))
    limits = (0.0, 1.0) if paper in CHANCE_BOUNDED else (-np.inf, np.inf)
    name, ce = pick_continuous(paper, {c: line[c].to_numpy(dtype=float) for c in LOG_SCALE if c in line})
    if paper != "exact_match" or name is None:
        ce = None
    tokens_column = "answer_tokens_mean" if name == "answer_ce_per_token" else "target_tokens_mean"
    tokens = float(line[tokens_column].mean()) if tokens_column in line else np.nan
    se = (high - low) / (2 * 1.96)
    ce_se = np.zeros(len(x))
    if ce is not None and "target_ce_per_token_ci_low" in line:  # relative spread of CE, applied in log space
        spread = np.log(line.target_ce_per_token_ci_high / line.target_ce_per_token_ci_low).to_numpy(float) / 3.92
        ce_se = np.nan_to_num(spread, nan=0.0, posinf=0.0)  # an interval reaching CE 0 has no log spread
    rng = np.random.default_rng(seed)
    x_grid = np.linspace(x[cut - 1], x[-1], GRID_POINTS)
    at = np.r_[x[cut:], x_grid]  # the held-out models, then the grid for the emergence scale
    summary, held_out = {"cutoff_flops": float(10 ** x[cut - 1]), "n_fit": cut, "n_held_out": held}, []
    for form in FORECASTERS:
        fitted = predict(form, x[:cut], y[:cut], at, chance=chance, ce=None if ce is None else ce[:cut],
                         tokens=tokens)
        point = fitted[:held]
        draws_y = rng.normal(y[:cut], np.nan_to_num(se[:cut]), size=(FORECAST_RESAMPLES, cut))
        draws_ce = (None if ce is None else
                    ce[:cut] * np.exp(rng.normal(0, np.nan_to_num(ce_se[:cut]), size=(FORECAST_RESAMPLES, cut))))
        replicates = predict(form, x[:cut], draws_y, at, chance=chance, ce=draws_ce, tokens=tokens)
        band_low, band_high = np.quantile(replicates[:, :held], [0.025, 0.975], axis=0)
        # a prediction interval for the observation: the fit's band and the held-out model's own sampling error
        # (its interval's half-width: at 0/n the lower side is 0, yet a prediction of 0.001 may measure 0)
        sampling = (high[cut:] - low[cut:]) / 2
        band_low = np.clip(point - np.hypot(point - band_low, sampling), *limits)
        band_high = np.clip(point + np.hypot(band_high - point, sampling), *limits)
        covered = (y[cut:] >= band_low) & (y[cut:] <= band_high)
        crossings = crossing(x_grid, replicates[:, held:], bar)
        finite = np.isfinite(crossings).mean() >= 0.975
        summary.update({
            f"{form}_predicted": float(point[-1]), f"{form}_ci_low": float(band_low[-1]),
            f"{form}_ci_high": float(band_high[-1]), f"{form}_abs_error": float(np.abs(point - y[cut:]).mean()),
            f"{form}_coverage": float(covered.mean()) if np.isfinite(point).all() else np.nan,
            f"{form}_emergence_flops": crossing(x_grid, fitted[held:], bar),
            f"{form}_emergence_flops_ci_low": float(np.nanquantile(crossings, 0.025)) if finite else np.nan,
            f"{form}_emergence_flops_ci_high": float(np.nanquantile(crossings, 0.975)) if finite else np.nan,
        })
        held_out += [{"forecaster": form, "model_flops": float(10 ** xi), "predicted": p, "ci_low": lo, "ci_high": hi,
                      "observed": yi, "abs_error": abs(p - yi), "covered": bool(c)}
                     for xi, p, lo, hi, yi, c in zip(x[cut:], point, band_low, band_high, y[cut:], covered)]
    return summary, held_out


def forecast_table(cells: pd.DataFrame, samples: pd.DataFrame | None, emergence: pd.DataFrame, *,
                   margin: float = 0.05, n_resamples: int = 1000,
                   seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per task x strategy x family, one row per held-out model x forecaster). `emergence` is the
    emergence table of the same cells and settings (`emergence_table`, `tables/emergence.csv`): the observed
    emergence scales, read rather than computed twice. The summary's `predicted`/`observed` are the winning
    forecaster's prediction and the observation at the largest model; `abs_error` its mean absolute error and
    `coverage` its interval coverage over the held-out models; `winner` the forecaster with the lowest mean
    absolute error."""
    points = scale_points(cells, samples, n_resamples=n_resamples, seed=seed)
    observed_scale = emergence.set_index([*LINE_KEYS, "metric"]).emergence_flops.to_dict()
    paper = dict(zip(cells.task, cells.metric))
    rows, models = [], []
    for key, line in points.groupby(LINE_KEYS, sort=True):
        line = line.sort_values("train_flops", ignore_index=True)
        metric = paper[key[0]]
        row = {**dict(zip(LINE_KEYS, key)), "metric": metric, "n_models": len(line), "note": ""}
        row["observed_emergence_flops"] = observed_scale.get((*key, metric), np.nan)
        if len(line) < MIN_MODELS or metric not in line or line[metric].isna().any():
            rows.append({**row, "note": f"too few models: {len(line)} < {MIN_MODELS}" if len(line) < MIN_MODELS
                         else f"no {metric}"})
            continue
        summary, held_out = forecast_line(line, metric, margin, seed=metrics.seed_for(*key, base=seed))
        errors = {form: summary[f"{form}_abs_error"] for form in FORECASTERS
                  if np.isfinite(summary[f"{form}_abs_error"])}
        if not errors:
            rows.append({**row, **summary, "note": "no forecaster could be fitted"})
            continue
        winner = min(errors, key=errors.get)
        row.update(summary, winner=winner, predicted=summary[f"{winner}_predicted"],
                   observed=float(line[metric].iloc[-1]), abs_error=errors[winner],
                   coverage=summary[f"{winner}_coverage"])
        rows.append(row)
        models += [{**dict(zip(LINE_KEYS, key)), "metric": metric, **r} for r in held_out]
    return pd.DataFrame(rows), pd.DataFrame(models)


def write_forecast(cells_path, samples_path, emergence_path, csv_out, models_out, *, margin: float,
                   n_resamples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`tables/forecast.csv` (per line) and `tables/forecast_models.csv` (per held-out model and forecaster)."""
    table, models = forecast_table(pd.read_parquet(cells_path), read_samples(samples_path),
                                   pd.read_csv(emergence_path), margin=margin, n_resamples=n_resamples, seed=seed)
    for frame, path in ((table, csv_out), (models, models_out)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return table, models
