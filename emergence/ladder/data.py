"""Arithmetic problems phrased like BIG-bench's arithmetic tasks, and the ladder's training corpus.

The problem space of each operation is split once and for all by a hash of the problem: a fixed tenth is
held out. Training draws only from the rest, evaluation only from the held-out part, so evaluation items are
disjoint from training items by construction (whatever seeds or sizes are used), and no training run needs to
read any task file.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

QUERY_FORMAT = "Q: {question}\nA:"  # what the model sees before its answer
ANSWER_FORMAT = " {answer}"  # the continuation scored by log-likelihood and exact match
EXAMPLE_SEPARATOR = "\n\n"  # between examples in training rows and between few-shot exemplars
STOP = "\n"  # generation stops here; training supervises it after every answer
HELD_OUT_PER_MILLE = 100  # 10% of every operation's problems are never trained on


@dataclass(frozen=True)
class Operation:
    """A binary arithmetic operation on exactly-`digits`-digit operands."""

    word: str
    digits: int
    apply: Callable[[int, int], int]

    def question(self, a: int, b: int) -> str:
        return f"What is {a} {self.word} {b}?"

    def operand_range(self) -> tuple[int, int]:
        """Half-open range of exactly-`digits`-digit numbers (mixed lengths made training fail in probes)."""
        return 10 ** (self.digits - 1), 10**self.digits

    def scratchpad(self, a: int, b: int) -> str | None:
        """The answer preceded by per-digit work with carries, least significant digit first, in fixed-width
        steps (Nye et al. 2021, "Show your work"): 123 + 456 -> `3+6+0=09 2+5+0=07 1+4+0=05 | 579`.

        Fixed widths keep every step the same length, which probes found necessary; None where no trace is
        defined (only addition has one).
        """
        if self.apply is not operator.add:
            return None
        steps = [f"{x}+{y}+{carry}={total:02d}" for x, y, carry, total in self._column_sums(a, b)]
        return f"{' '.join(steps)} | {a + b}"

    def rationale(self, a: int, b: int) -> str | None:
        """A chain of thought in words ending in "The answer is N." (None where undefined: only addition)."""
        if self.apply is not operator.add:
            return None
        sentences = [f"{x} plus {y}" + (f" plus {carry}" if carry else "") + f" is {total}"
                     + (", carry 1." if total >= 10 else ".") for x, y, carry, total in self._column_sums(a, b)]
        return " ".join(["Add the digits from the right.", *sentences, f"The answer is {a + b}."])

    def _column_sums(self, a: int, b: int) -> list[tuple[str, str, int, int]]:
        """(digit of a, digit of b, carry in, column sum) per column, least significant first: the work that
        the scratchpad and the rationale both write out."""
        columns, carry = [], 0
        for x, y in zip(reversed(f"{a:0{self.digits}d}"), reversed(f"{b:0{self.digits}d}")):
            total = int(x) + int(y) + carry
            columns.append((x, y, carry, total))
            carry = total // 10
        return columns

    def completion(self, a: int, b: int, example_format: str) -> str:
        """What follows the query: the answer ("plain") or the scratchpad ending in the answer."""
        if example_format == "plain":
            return str(self.apply(a, b))
        trace = self.scratchpad(a, b)
        if example_format != "scratchpad" or trace is None:
            raise ValueError(f"no {example_format!r} completion for '{self.word}'; valid formats: "
                             f"{', '.join(EXAMPLE_FORMATS)} (scratchpad only for addition)")
        return trace


EXAMPLE_FORMATS = ("plain", "scratchpad")

OPERATIONS: dict[str, Operation] = {
    "addition_3digit": Operation("plus", 3, operator.add),
    "addition_5digit": Operation("plus", 5, operator.add),
    "subtraction_3digit": Operation("minus", 3, operator.sub),
    "multiplication_2digit": Operation("times", 2, operator.mul),
}


def is_held_out(op_name: str, a: int, b: int) -> bool:
    """True for the fixed tenth of problems reserved for evaluation (a stable hash, not a seed)."""
    digest = hashlib.blake2b(f"{op_name}:{a}:{b}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 1000 < HELD_OUT_PER_MILLE


def proposal(op_name: str, a: int, b: int) -> tuple[int, bool]:
    """A proposed answer for P(True) prompting (Kadavath et al. 2022) and whether it is right: half the problems
    (by a stable hash) get the true result, the others a wrong one close to it (one digit off by 1-9)."""
    result = OPERATIONS[op_name].apply(a, b)
    h = int.from_bytes(hashlib.blake2b(f"proposal:{op_name}:{a}:{b}".encode(), digest_size=8).digest(), "little")
    if h % 2 == 0:
        return result, True
    place = 10 ** ((h >> 1) % len(str(abs(result))))
    delta = (1 + (h >> 8) % 9) * place * (1 if (h >> 16) % 2 else -1)
    return result + delta, False


def format_query(question: str) -> str:
    return QUERY_FORMAT.format(question=question)


def format_answer(answer: str) -> str:
    return ANSWER_FORMAT.format(answer=answer)


def sample_problems(
    op_name: str, rng: np.random.Generator, *, held_out: bool
) -> Iterator[tuple[int, int, int]]:
    """Yield (a, b, result) forever, from the held-out part or from the training part only."""
    op = OPERATIONS[op_name]
    low, high = op.operand_range()
    while True:
        a, b = (int(x) for x in rng.integers(low, high, size=2))
        if is_held_out(op_name, a, b) == held_out:
            yield a, b, op.apply(a, b)


def held_out_items(op_name: str, n: int, seed: int) -> list[dict]:
    """`n` distinct held-out problems as records {question, answer, a, b}, in a seeded order."""
    op = OPERATIONS[op_name]
    low, high = op.operand_range()
    capacity = (high - low) ** 2 * HELD_OUT_PER_MILLE // 1000
    if n > capacity * 0.9:
        raise ValueError(
            f"{op_name}: asked for {n} held-out items but only about {capacity} exist; use fewer items."
        )
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    items = []
    for a, b, result in sample_problems(op_name, rng, held_out=True):
        if (a, b) in seen:
            continue
        seen.add((a, b))
        item = {"question": op.question(a, b), "answer": str(result), "a": a, "b": b}
        if (trace := op.scratchpad(a, b)) is not None:
            item["scratchpad"] = trace
        if (rationale := op.rationale(a, b)) is not None:
            item["rationale"] = rationale
        proposed, correct = proposal(op_name, a, b)
        item.update(proposed=str(proposed), proposed_correct=correct)
        items.append(item)
        if len(items) == n:
            return items
    raise AssertionError("unreachable")


def encode_example(question: str, completion: str, encode: Callable[[str], list[int]]) -> tuple[list[int], int]:
    """Token ids of one example and the index where the supervised part (completion + stop) starts."""
    prompt = encode(format_query(question))
    supervised = encode(format_answer(completion) + STOP)
    return prompt + supervised, len(prompt)


def pack_rows(
    examples: Iterator[tuple[list[int], int]],
    n_rows: int,
    n_ctx: int,
    separator: list[int],
    pad_id: int,
    max_examples: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pack whole examples into rows (never split across rows, so every answer sees its question).

    Returns input_ids (n_rows, n_ctx), labels (n_rows, n_ctx) where labels[t] is the target for the token at
    t (the model is trained to predict input_ids[t + 1]; HF shifts internally, so labels equal input ids on
    supervised positions and -100 elsewhere), and the number of real tokens.
    """
    input_ids = np.full((n_rows, n_ctx), pad_id, dtype=np.int64)
    labels = np.full((n_rows, n_ctx), -100, dtype=np.int64)
    pending = None
    for row in range(n_rows):
        pos = 0
        for _ in range(1 + row % max_examples):  # rows hold 1, 2, ..., max_examples examples in turn
            ids, answer_start = pending if pending is not None else next(examples)
            pending = None
            start = pos + (len(separator) if pos else 0)
            if start + len(ids) > n_ctx:
                if pos == 0:
                    raise ValueError(f"an example of {len(ids)} tokens does not fit n_ctx={n_ctx}")
                pending = (ids, answer_start)
                break
            if pos:
                input_ids[row, pos:start] = separator
            input_ids[row, start : start + len(ids)] = ids
            labels[row, start + answer_start : start + len(ids)] = ids[answer_start:]
            pos = start + len(ids)
    return input_ids, labels, int((input_ids != pad_id).sum())


def mixed_examples(
    weights: dict[str, float], rng: np.random.Generator, encode: Callable[[str], list[int]], *, held_out: bool,
    example_format: str = "plain",
) -> Iterator[tuple[list[int], int]]:
    """An endless stream of encoded examples, each operation drawn with probability proportional to its weight."""
    names = [name for name, w in weights.items() if w > 0]
    p = np.array([weights[name] for name in names], dtype=float)
    p /= p.sum()
    streams = {name: sample_problems(name, rng, held_out=held_out) for name in names}
    while True:
        name = names[int(rng.choice(len(names), p=p))]
        a, b, _ = next(streams[name])
        op = OPERATIONS[name]
        yield encode_example(op.question(a, b), op.completion(a, b, example_format), encode)
