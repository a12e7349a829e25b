"""What a ladder run will produce, computed from config alone (no torch import: the Snakefile uses it at DAG time)."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from emergence.ladder import data
from emergence.ladder.model import ModelSize
from emergence.ladder.tokenizer import ALPHABET

VOCAB_SIZE = len(ALPHABET) + 3  # the tokenizer's specials plus one token per character


def model_size(width: int, n_ctx: int) -> ModelSize:
    return ModelSize.from_width(width, n_ctx=n_ctx, vocab_size=VOCAB_SIZE)


@functools.lru_cache(maxsize=None)
def mean_example_tokens(op_name: str, example_format: str = "plain", samples: int = 2000) -> float:
    """Mean length in tokens (= characters) of one training example of an operation, its stop included."""
    rng = np.random.default_rng(0)
    op = data.OPERATIONS[op_name]
    problems = data.sample_problems(op_name, rng, held_out=False)
    lengths = [len(data.format_query(op.question(a, b)) + data.format_answer(op.completion(a, b, example_format))
                   + data.STOP) for a, b, _ in itertools.islice(problems, samples)]
    return float(np.mean(lengths))


def total_steps(train_tokens: int, batch_rows: int, examples_per_row: int, operations: dict[str, float],
                example_format: str = "plain") -> int:
    """Optimizer steps for a token budget (the tokens actually seen are counted during training).

    Row r holds 1 + r % examples_per_row examples, so a row holds (examples_per_row + 1) / 2 on average.
    """
    weight = sum(operations.values())
    per_example = sum(w / weight * mean_example_tokens(op, example_format) for op, w in operations.items() if w > 0)
    separator = len(data.EXAMPLE_SEPARATOR) - len(data.STOP)
    per_row = (examples_per_row + 1) / 2 * (per_example + separator) - separator
    return max(1, math.ceil(train_tokens / (batch_rows * per_row)))


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
