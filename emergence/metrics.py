"""Per-sample and per-cell metrics. Each is small, and its docstring says why it is there."""

from __future__ import annotations

import hashlib

import numpy as np
import sacrebleu


def target_ce_per_token(target_logprob: np.ndarray, target_tokens: np.ndarray) -> np.ndarray:
    """Cross-entropy of the gold answer per token, in nats.

    The continuous metric of Schaeffer et al. (2023): it falls smoothly with scale even where exact match jumps.
    """
    return -np.asarray(target_logprob, dtype=float) / np.asarray(target_tokens, dtype=float)


def p_all_tokens(target_logprob: np.ndarray) -> np.ndarray:
    """Probability of producing every gold token, exp(-total CE).

    If each of L answer tokens is right with probability p, exact match behaves like p^L; this is that
    prediction per sample (exact under greedy decoding only when each token's probability exceeds 1/2).
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
