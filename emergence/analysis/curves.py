"""Statistics of one curve: a metric over models sorted by scale (x = log10 training FLOPs, y oriented so that
higher is better). Plain arrays in, numbers out, so each is tested on synthetic curves with known answers."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

# A 95% interval half-width of zero (a constant metric) would make every step infinitely sharp; below this share
# of the curve's range a step is not resolved.
MIN_RESOLUTION_SHARE = 0.01
LM_MAX_STEPS = 100  # Levenberg-Marquardt steps of the logistic fit (2 parameters from a close start: ample)
LM_TOLERANCE = 1e-10  # converged when no row's step moves its logit by more


def orientation(y: np.ndarray) -> float:
    """I = sign(argmax y - argmin y): +1 when the best model is larger than the worst (BIG-bench's I)."""
    return float(np.sign(int(np.argmax(y)) - int(np.argmin(y)))) or 1.0


def breakthroughness(y: np.ndarray, resolution: float = 0.0) -> float:
    """BIG-bench's breakthroughness (Srivastava et al. 2022, Sec. 3.4):
    B = I * (max y - min y) / sqrt(median((y[i+1] - y[i])^2)), always finite.

    The typical step is floored at `resolution` (the smallest change the data resolve: the models' mean 95%
    half-width) and at 1% of the range, so a curve whose median step is 0 (a single jump) scores range/floor,
    not infinity. The score depends on n and on the floor; `breakthroughness_references` gives what a straight
    line and a single step of the same range score under the same n and floor.
    """
    y = np.asarray(y, dtype=float)
    if len(y) < 2:
        return float("nan")
    total = float(y.max() - y.min())
    if total == 0:
        return 0.0
    typical_step = max(float(np.sqrt(np.median(np.diff(y) ** 2))), resolution, MIN_RESOLUTION_SHARE * total)
    return orientation(y) * total / typical_step


def breakthroughness_references(n: int, total: float, resolution: float = 0.0) -> tuple[float, float]:
    """(straight line, single step): the breakthroughness of a straight line and of one jump covering the range
    `total` over n models, with the same floor. A curve ranks as jumpy only against these: at n = 5 a line
    scores 4, so 3.2 is no jump."""
    line = breakthroughness(np.linspace(0.0, total, n), resolution)
    step = breakthroughness(np.r_[np.zeros(n // 2), np.full(n - n // 2, total)], resolution)
    return line, step


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


def line_fits(xs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of the least-squares lines through each row of [rows, points] on xs."""
    centred = xs - xs.mean()
    slopes = (rows - rows.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
    return slopes, rows.mean(axis=1) - slopes * xs.mean()


def logistic_fits(xs: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of share = expit(slope x + intercept) fitted by least squares in share to each row of
    [rows, points] (shares strictly inside (0, 1)): Levenberg-Marquardt with the exact Jacobian from the straight
    line through logit(share), all rows at once; a row keeps its best parameters (an optimum at infinity, a step,
    ends at a steep finite logistic)."""
    u = xs - xs.mean()  # centred: slope and intercept decoupled

    def loss(a, c):
        return ((expit(a[:, None] * u + c[:, None]) - share) ** 2).sum(axis=1)

    a, c = line_fits(u, logit(share))
    current, damping = loss(a, c), np.full(len(share), 1e-3)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(LM_MAX_STEPS):
            p = expit(a[:, None] * u + c[:, None])
            jc = p * (1 - p)
            ja, r = jc * u, p - share
            haa, hcc = (ja * ja).sum(axis=1) * (1 + damping), (jc * jc).sum(axis=1) * (1 + damping)
            hac, ga, gc = (ja * jc).sum(axis=1), (ja * r).sum(axis=1), (jc * r).sum(axis=1)
            det = haa * hcc - hac**2
            step_a, step_c = (hac * gc - hcc * ga) / det, (hac * ga - haa * gc) / det
            if not (np.abs(step_a) * np.abs(u).max() + np.abs(step_c) > LM_TOLERANCE).any():
                break
            trial = loss(a + step_a, c + step_c)
            better = trial < current  # NaN (a singular step) is never better
            a, c = np.where(better, a + step_a, a), np.where(better, c + step_c, c)
            current = np.where(better, trial, current)
            damping = np.clip(np.where(better, damping / 10, damping * 10), 1e-12, 1e12)
    return a, c - a * xs.mean()


def fit_predict(xs: np.ndarray, ys: np.ndarray, x_new: np.ndarray, form: str,
                bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Fit y on (xs, ys) and predict at x_new; ys one curve, or [replicates, points] for one fit per row
    (predictions [replicates, len(x_new)]). `linear`: y linear in log FLOPs. `sigmoid`: a logistic in log FLOPs
    rising from bounds[0] (the chance floor) to bounds[1], least squares in y (`logistic_fits`); only its
    midpoint and slope are fitted, so two models suffice (NaN without bounds)."""
    xs, ys, x_new = (np.asarray(a, dtype=float) for a in (xs, ys, x_new))
    rows = np.atleast_2d(ys)
    if form == "linear":
        slopes, intercepts = line_fits(xs, rows)
        predicted = slopes[:, None] * x_new + intercepts[:, None]
    elif form != "sigmoid":
        raise ValueError(f"unknown fit form {form!r}; valid: linear, sigmoid")
    elif bounds is None:
        predicted = np.full((len(rows), len(x_new)), np.nan)
    else:
        low, high = bounds
        slopes, intercepts = logistic_fits(xs, np.clip((rows - low) / (high - low), 1e-4, 1 - 1e-4))
        predicted = low + (high - low) * expit(slopes[:, None] * x_new + intercepts[:, None])
    return predicted if ys.ndim == 2 else predicted[0]


def predictability_error(x: np.ndarray, y: np.ndarray, form: str, bounds: tuple[float, float] | None = None) -> float:
    """Fit y on the smaller half of the models (`fit_predict`) and return the mean absolute error on the larger
    half; NaN under 4 models. An emergent ability is one the small-model fit fails to predict."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    half = len(x) // 2
    if half < 2:
        return float("nan")
    return float(np.abs(fit_predict(x[:half], y[:half], x[half:], form, bounds) - y[half:]).mean())


def curve_statistics(x: np.ndarray, y: np.ndarray, ci_low: np.ndarray | None, baseline: float | None,
                     margin: float, bounds: tuple[float, float] | None = None, resolution: float = 0.0) -> dict:
    """All statistics of one curve (x ascending, y oriented higher-is-better; `bounds` for the sigmoid fit)."""
    index = None if ci_low is None else emergence_index(y, ci_low, baseline, margin)
    line, step = breakthroughness_references(len(y), float(np.ptp(y)), resolution)
    return {
        "range": float(np.ptp(y)),
        "emergence_index": index,
        "breakthroughness": breakthroughness(y, resolution),
        "breakthroughness_line": line,
        "breakthroughness_step": step,
        "linearity": linearity(x, y),
        "predictability_error_linear": predictability_error(x, y, "linear"),
        "predictability_error_sigmoid": predictability_error(x, y, "sigmoid", bounds),
    }


def relative_error(stats: dict, form: str = "linear") -> float:
    """The small-half fit's error on the large half as a fraction of the curve's range (scale-free)."""
    return stats[f"predictability_error_{form}"] / stats["range"] if stats["range"] > 0 else 0.0
