"""Prefix planning: which requests share a cached prefix (few-shot exemplars, the context of multiple-choice
options), chosen to save the most recomputed tokens."""

from __future__ import annotations

import numpy as np

MIN_SHARED_PREFIX = 16  # tokens; shorter common prefixes are recomputed rather than cached


def shared_prefixes(rows: list[tuple[tuple[int, ...], int]], order: list[int], shareable: np.ndarray) -> np.ndarray:
    """For rows (tokens, n scored) in lexicographic `order`: how many leading tokens neighbours k and k+1 may share,
    their common prefix capped by `shareable` (input tokens before each row's first scored position)."""
    if len(rows) < 2:
        return np.zeros(0, dtype=np.int64)
    padded = np.full((len(rows), max(len(t) for t, _ in rows)), -1, dtype=np.int64)
    for i, (tokens, _) in enumerate(rows):
        padded[i, : len(tokens)] = tokens
    a, b = padded[order[:-1]], padded[order[1:]]  # [N-1, T] neighbours in sorted order
    same = a == b
    common = np.where(same.all(1), same.shape[1], same.argmin(1))
    return np.minimum(common, np.minimum(shareable[order[:-1]], shareable[order[1:]]))


def plan_prefix_groups(shared: np.ndarray, min_prefix: int) -> list[tuple[int, int, int]]:
    """Choose which runs of lexicographically sorted rows share a cached prefix.

    `shared[k]` is how many leading tokens rows k and k+1 may share (their common prefix, capped so that no
    scored position falls inside it). A run of rows [lo, hi] can share min(shared[lo:hi]) tokens, saving
    (hi - lo) x that many token computations; splitting the run where that minimum is reached may save more (an
    instruction shared by all prompts vs. the whole context shared by the options of one question). The best
    choice is found bottom-up over this interval tree. Returns (lo, hi, prefix length) per group, hi > lo.
    """
    if len(shared) == 0:
        return []
    best: dict[tuple[int, int], tuple[int, list]] = {}
    stack = [(0, len(shared), False)]  # rows lo..hi inclusive; shared[lo:hi] links them
    while stack:
        lo, hi, children_done = stack.pop()
        if lo == hi:
            best[lo, hi] = (0, [])
            continue
        links = shared[lo:hi]
        p = int(links.min())
        cuts = lo + np.flatnonzero(links == p)  # split between row k and k+1 at each minimum
        subruns = list(zip([lo, *(cuts + 1).tolist()], [*cuts.tolist(), hi]))
        if not children_done:
            stack.append((lo, hi, True))
            stack.extend((a, b, False) for a, b in subruns)
            continue
        split = [best.pop(s) for s in subruns]
        split_saving = sum(s for s, _ in split)
        whole_saving = (hi - lo) * p if p >= min_prefix else 0
        if whole_saving > 0 and whole_saving >= split_saving:
            best[lo, hi] = (whole_saving, [(lo, hi, p)])
        else:
            best[lo, hi] = (split_saving, [g for _, groups in split for g in groups])
    return best[0, len(shared)][1]
