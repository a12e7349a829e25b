"""Per-sample and per-cell metrics. Each is small, and its docstring says why it is there."""

from __future__ import annotations

import hashlib

import numpy as np
import sacrebleu
from scipy import stats


def target_ce_per_token(target_logprob: np.ndarray, target_tokens: np.ndarray) -> np.ndarray:
    """Cross-entropy of the gold answer per token, in nats.

    The continuous metric of Schaeffer et al. (2023): it falls smoothly with scale even where exact match jumps.
    """
    return -np.asarray(target_logprob, dtype=float) / np.asarray(target_tokens, dtype=float)


def p_all_tokens(target_logprob: np.ndarray) -> np.ndarray:
    """Probability of sampling every gold token at temperature 1, exp(-total CE): the p^L of Schaeffer et al.

    Its mean is expected exact match under *sampling*, not under the greedy decoding the generative view scores
    (a token can be the argmax at p = 0.4, or miss it at p = 0.6 when two tokens tie), and it covers only the scored
    continuation. The greedy counterpart is `is_greedy_stop` (every gold token and the stop are the argmax).
    """
    return np.exp(np.asarray(target_logprob, dtype=float))


def seed_for(*parts: object, base: int = 0) -> int:
    """A stable seed for one cell (Python's hash() is salted per process, so it would break determinism)."""
    digest = hashlib.sha256("|".join(map(str, (base, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def bootstrap_ci(values: np.ndarray, *, n_resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over samples.

    Exact match on a few hundred items has a sampling error of several points; the interval is what tells an
    emergent jump from noise (and the analysis uses its lower bound to call emergence).
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def clopper_pearson(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial (Clopper-Pearson) interval of a proportion: never narrower than the truth allows.

    The percentile bootstrap of 0 correct out of 250 is [0, 0]; the exact upper bound is 0.0146 (a model that
    is right 1% of the time shows 0/250 in 8% of evaluations), so "at chance" is not overstated.
    """
    if n <= 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low = stats.beta.ppf(tail, successes, n - successes + 1) if successes > 0 else 0.0
    high = stats.beta.ppf(1 - tail, successes + 1, n - successes) if successes < n else 1.0
    return float(low), float(high)


def proportion_ci(mean: float, *, n: float | None = None, stderr: float | None = None,
                  level: float = 0.95) -> tuple[float, float]:
    """Interval of a proportion known only by its mean and either its sample count (exact binomial on the
    rounded count) or its standard error (published results: Wilson's interval at the n the stderr implies,
    n = p(1 - p) / se^2; a normal interval clipped to [0, 1] where p is 0 or 1)."""
    if n is not None and np.isfinite(n) and n > 0:
        return clopper_pearson(round(mean * n), n, level)
    if stderr is None or not np.isfinite(stderr):
        return float("nan"), float("nan")
    z = stats.norm.ppf(1 - (1 - level) / 2)
    if stderr <= 0 or mean in (0.0, 1.0):
        return float(max(0.0, mean - z * stderr)), float(min(1.0, mean + z * stderr))
    implied_n = mean * (1 - mean) / stderr**2
    centre = (mean + z**2 / (2 * implied_n)) / (1 + z**2 / implied_n)
    half = z / (1 + z**2 / implied_n) * np.sqrt(mean * (1 - mean) / implied_n + z**2 / (4 * implied_n**2))
    return float(centre - half), float(centre + half)


def is_binary(values: np.ndarray) -> bool:
    """True for 0/1 outcomes (exact match, a one-hot choice grade): their interval is exact binomial."""
    values = np.asarray(values, dtype=float)
    return len(values) > 0 and bool(np.isin(values, (0.0, 1.0)).all())


def sample_ci(values: np.ndarray, *, n_resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """A cell's interval of the mean: exact binomial for 0/1 outcomes, percentile bootstrap otherwise."""
    values = np.asarray(values, dtype=float)
    if is_binary(values):
        return clopper_pearson(values.sum(), len(values), level)
    return bootstrap_ci(values, n_resamples=n_resamples, seed=seed, level=level)


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two token sequences.

    Token edit distance is one of Schaeffer et al.'s continuous metrics: one wrong digit of five costs 1, not
    the whole answer, so partial progress that exact match hides becomes visible.
    """
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def sentence_bleu(answer: str, targets: list[str]) -> float:
    """BLEU (0-100) of one answer against every valid target, as sacrebleu computes it.

    BIG-bench scores translation-like tasks (IPA transliteration) by BLEU; per sample it is the continuous
    counterpart of exact match on long free-form answers (partly right words still score).
    """
    return float(sacrebleu.sentence_bleu(answer, targets).score)


def multiclass_brier(probs: np.ndarray, gold: int) -> float:
    """Squared error of the choice distribution against the one-hot gold choice, summed over choices (0-2).

    Schaeffer et al. use Brier score as the continuous replacement of multiple-choice grade: it moves as soon
    as probability shifts toward the right choice, before the argmax flips.
    """
    target = np.zeros(len(probs))
    target[gold] = 1.0
    return float(np.sum((np.asarray(probs, float) - target) ** 2))


def brier(p_true: np.ndarray, label: np.ndarray) -> float:
    """Mean squared error of P(True) against the truth: calibration and sharpness in one number (lower is better)."""
    return float(np.mean((np.asarray(p_true, float) - np.asarray(label, float)) ** 2))


def expected_calibration_error(p_true: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width confidence bins: the gap between stated probability and observed frequency,
    weighted by bin size (Kadavath et al. 2022 report it for P(True))."""
    p, y = np.asarray(p_true, float), np.asarray(label, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))
