"""What a ladder run will produce, computed from config alone (no torch import: the Snakefile uses it at DAG time)."""

from __future__ import annotations

import functools
import math

import numpy as np

from emergence.ladder import data
from emergence.ladder.model import ModelSize
from emergence.ladder.tokenizer import VOCAB, encode_text

VOCAB_SIZE = len(VOCAB)  # specials, one token per character, and the digits at their other places


def model_size(width: int, n_ctx: int) -> ModelSize:
    return ModelSize.from_width(width, n_ctx=n_ctx, vocab_size=VOCAB_SIZE)


@functools.cache
def mean_row_tokens(n_ctx: int, examples_per_row: int, document: str, operations: tuple[tuple[str, float], ...],
                    example_format: tuple[tuple[str, float], ...] = (("plain", 1.0),), rows: int = 400) -> float:
    """Mean real (non-pad) tokens of a packed training row, measured by packing `rows` rows of the real corpus
    (the ladder's own ids, without the tokenizer's import)."""
    documents, separator = data.training_documents(document, dict(operations), np.random.default_rng(0),
                                                   encode_text, held_out=False, n_ctx=n_ctx,
                                                   max_examples=examples_per_row, example_format=dict(example_format))
    _, _, n_tokens = data.pack_rows(documents, rows, n_ctx, encode_text(separator), pad_id=0,
                                    max_examples=examples_per_row)
    return n_tokens / rows


def total_steps(train_tokens: int, batch_rows: int, n_ctx: int, examples_per_row: int, document: str,
                operations: dict[str, float], example_format: dict[str, float]) -> int:
    """Optimizer steps for a token budget (the tokens actually seen are counted during training);
    `example_format` as per-document shares (`data.format_shares`)."""
    per_row = mean_row_tokens(n_ctx, examples_per_row, document, tuple(sorted(operations.items())),
                              tuple(sorted(example_format.items())))
    return max(1, math.ceil(train_tokens / (batch_rows * per_row)))


def peak_lr(lr: float, width: int, scaling_width: int | None) -> float:
    """The run's peak learning rate: `lr` up to `scaling_width`, then falling as 1/width (muP's Adam rule for
    hidden matrices, Yang et al. 2022). Probes here on 2-digit addition: at 3e-3 the 96-wide model stayed on its
    loss plateau through 1M tokens on every seed tried, where the 64-wide one left it; at 1.5e-3 it left it."""
    return lr if scaling_width is None else lr * min(1.0, scaling_width / width)


def run_tokens(train_tokens: int, width: int, widest: int, exponent: float) -> int:
    """The run's token budget: `train_tokens` for the family's widest model, times (width / widest)^exponent
    for the others (0: one budget for all, as Pythia; 1: tokens grow with width, as compute-scaled families)."""
    return max(1, round(train_tokens * (width / widest) ** exponent))


def checkpoint_steps(total: int, count: int, first_fraction: float) -> list[int]:
    """`count` log-spaced steps from `first_fraction * total` to `total` (the training-time axis, as Pythia's)."""
    if count == 1:
        return [total]
    first = max(1.0, first_fraction * total)
    ratio = (total / first) ** (1 / (count - 1))
    steps = sorted({max(1, round(first * ratio**i)) for i in range(count - 1)} | {total})
    return steps


def run_name(family: str, width: int, n_ctx: int, seed: int) -> str:
    """A training run of one family, size and seed, e.g. `ladder-d128L3-s0`."""
    return f"{family}-{model_size(width, n_ctx).name}-s{seed}"


def checkpoint_id(run: str, step: int) -> str:
    """A checkpoint is a model in its own right, e.g. `ladder-d128L3-s0-step1465`."""
    return f"{run}-step{step}"
