"""Arithmetic in BIG-bench's formats, and the ladder's training corpus: the one owner of these prompt formats.

Two document formats, each exactly as BIG-bench renders its task (`bigbench/api/json_task.py`):
- `arithmetic`: `\nQ: What is 36 plus 97?\nA: ` then the answer; few-shot exemplars joined by `\n`.
- `modified_arithmetic`: a header line, then lines `a op b -> c`, all of one operation and one hidden
  modification (`plus_one` adds 1 to every result), the model inferring it from the lines before.
Training rows hold several problems in a row, as k-shot prompts do, and supervise every answer and its stop.

Held out by construction, twice over: every problem of every BIG-bench file shipped with the package (queries
and in-context lines, `benchmark_problems`) and a fixed tenth of each generated operation's problem space (by a
stable hash, for the generated tasks) are rejected by the training stream, whatever the seeds or sizes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from emergence import layout
from emergence.tasks.shipped import shipped_files

QUERY_FORMAT = "\nQ: {question}\nA: "  # BIG-bench's default input and output prefixes around the question
ANSWER_FORMAT = "{answer}"  # the continuation scored by log-likelihood and exact match
STOP = "\n"  # generation stops here; training supervises it after every answer
EXAMPLE_SEPARATOR = "\n"  # BIG-bench's default few-shot separator, after an exemplar's answer
HELD_OUT_PER_MILLE = 100  # 10% of every operation's problems are never trained on (generated tasks)

MODIFIED_HEADER = "In the following lines, the symbol -> represents a simple mathematical operation.\n"
MODIFIED_LINE = "{a} {symbol} {b} ->"  # then " " and the (modified) result
MODIFIED_OPERAND_LIMIT = 1000  # modified_arithmetic's operands are 0..999, of mixed lengths
DOCUMENTS = ("arithmetic", "modified_arithmetic")


@dataclass(frozen=True)
class Operation:
    """A binary arithmetic operation on exactly-`digits`-digit operands."""

    word: str
    digits: int
    apply: Callable[[int, int], int]
    symbol: str

    def question(self, a: int, b: int) -> str:
        return f"What is {a} {self.word} {b}?"

    def operand_range(self) -> tuple[int, int]:
        """Half-open range of exactly-`digits`-digit numbers, as BIG-bench's n-digit subtasks draw them."""
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
        """What follows the query: the answer ("plain"), ten times the answer ("tenfold": a document's own
        convention, as amounts stated in tenths, that its question does not state) or the scratchpad ending in
        the answer."""
        if example_format == "plain":
            return str(self.apply(a, b))
        if example_format == "tenfold":
            return str(10 * self.apply(a, b))
        trace = self.scratchpad(a, b)
        if example_format != "scratchpad" or trace is None:
            raise ValueError(f"no {example_format!r} completion for '{self.word}'; valid formats: "
                             f"{', '.join(EXAMPLE_FORMATS)} (scratchpad only for addition)")
        return trace


EXAMPLE_FORMATS = ("plain", "scratchpad", "tenfold")

OPERATIONS: dict[str, Operation] = {
    "addition_2digit": Operation("plus", 2, operator.add, "+"),
    "addition_3digit": Operation("plus", 3, operator.add, "+"),
    "addition_5digit": Operation("plus", 5, operator.add, "+"),
    "subtraction_2digit": Operation("minus", 2, operator.sub, "-"),
    "subtraction_3digit": Operation("minus", 3, operator.sub, "-"),
    "multiplication_2digit": Operation("times", 2, operator.mul, "*"),
}
SYMBOLS = {"plus": "+", "minus": "-", "times": "*", "divided by": "/"}  # BIG-bench's words -> symbols
ARITHMETIC_QUESTION = re.compile(r"What is (-?\d+) (plus|minus|times|divided by) (-?\d+)\?")
MODIFIED_PROBLEM = re.compile(r"(-?\d+) ([-+*/]) (-?\d+) ->")


def is_held_out(op_name: str, a: int, b: int) -> bool:
    """True for the fixed tenth of problems reserved for evaluation (a stable hash, not a seed)."""
    digest = hashlib.blake2b(f"{op_name}:{a}:{b}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 1000 < HELD_OUT_PER_MILLE


def problems_in(text: str) -> set[tuple[str, int, int]]:
    """Every (symbol, a, b) a BIG-bench arithmetic prompt poses: its question, or all `a op b ->` lines."""
    found = {(SYMBOLS[word], int(a), int(b)) for a, word, b in ARITHMETIC_QUESTION.findall(text)}
    return found | {(symbol, int(a), int(b)) for a, symbol, b in MODIFIED_PROBLEM.findall(text)}


@cache
def benchmark_problems() -> frozenset[tuple[str, int, int]]:
    """Every problem in the shipped BIG-bench files (queries and in-context lines): never trained on."""
    problems = set()
    for relative in shipped_files():
        spec = json.loads((layout.SHIPPED_BIGBENCH / relative).read_text(encoding="utf-8"))
        for example in spec["examples"]:
            problems |= problems_in(example["input"])
    return frozenset(problems)


def trainable(symbol: str, a: int, b: int, op_name: str | None = None) -> bool:
    """May the ladder train on this problem? Not if a shipped benchmark file or a generated task may pose it."""
    return (symbol, a, b) not in benchmark_problems() and not (op_name and is_held_out(op_name, a, b))


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
    """Yield (a, b, result) forever: held-out problems for generated tasks, or trainable ones only."""
    op = OPERATIONS[op_name]
    low, high = op.operand_range()
    while True:
        a, b = (int(x) for x in rng.integers(low, high, size=2))
        if is_held_out(op_name, a, b) if held_out else trainable(op.symbol, a, b, op_name):
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


Encoded = tuple[list[int], list[tuple[int, int]]]  # token ids, supervised (start, end) spans


def encode_example(question: str, completion: str, encode: Callable[[str], list[int]]) -> Encoded:
    """Token ids of one example and its supervised span: the output prefix's trailing space, the completion and
    the stop (lm-eval scores a continuation with the context's trailing white space moved into it)."""
    query = format_query(question)
    prompt = encode(query.rstrip(" "))
    supervised = encode(query[len(query.rstrip(" ")):] + format_answer(completion) + STOP)
    return prompt + supervised, [(len(prompt), len(prompt) + len(supervised))]


def pack_rows(
    documents: Iterator[Encoded],
    n_rows: int,
    n_ctx: int,
    separator: list[int],
    pad_id: int,
    max_examples: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pack whole documents into rows, as many as fit up to `max_examples` (never split across rows, so every
    answer sees its question; the document that does not fit starts the next row).

    Returns input_ids (n_rows, n_ctx), labels (n_rows, n_ctx) where labels[t] is the target for the token at
    t (the model is trained to predict input_ids[t + 1]; HF shifts internally, so labels equal input ids on
    supervised positions and -100 elsewhere), and the number of real tokens.
    """
    input_ids = np.full((n_rows, n_ctx), pad_id, dtype=np.int64)
    labels = np.full((n_rows, n_ctx), -100, dtype=np.int64)
    pending = None
    for row in range(n_rows):
        pos = 0
        for _ in range(max_examples):
            ids, spans = pending if pending is not None else next(documents)
            pending = None
            start = pos + (len(separator) if pos else 0)
            if start + len(ids) > n_ctx:
                if pos == 0:
                    raise ValueError(f"a training document of {len(ids)} tokens does not fit n_ctx={n_ctx}; "
                                     f"raise the family's n_ctx")
                pending = (ids, spans)
                break
            if pos:
                input_ids[row, pos:start] = separator
            input_ids[row, start : start + len(ids)] = ids
            for first, end in spans:
                labels[row, start + first : start + end] = ids[first:end]
            pos = start + len(ids)
    return input_ids, labels, int((input_ids != pad_id).sum())


def _weighted(weights: dict[str, float], rng: np.random.Generator) -> Iterator[str]:
    """Names drawn in proportion to their weights: the draws of `rng.choice(len(names), p=p)`, step for step
    (one uniform per draw, searched in the same normalised cdf), without its per-call checks, which took a
    quarter of the time to build a corpus."""
    names = [name for name, w in weights.items() if w > 0]
    p = np.array([weights[name] for name in names], dtype=float)
    cdf = (p / p.sum()).cumsum()
    cdf /= cdf[-1]
    while True:
        yield names[int(cdf.searchsorted(rng.random(), side="right"))]


def mixed_examples(
    weights: dict[str, float], rng: np.random.Generator, encode: Callable[[str], list[int]], *, held_out: bool,
    example_format: str = "plain",
) -> Iterator[Encoded]:
    """An endless stream of encoded `arithmetic` examples, each operation drawn in proportion to its weight."""
    streams = {name: sample_problems(name, rng, held_out=held_out) for name, w in weights.items() if w > 0}
    for name in _weighted(weights, rng):
        a, b, _ = next(streams[name])
        op = OPERATIONS[name]
        yield encode_example(op.question(a, b), op.completion(a, b, example_format), encode)


def format_shares(example_format: str | dict[str, float]) -> dict[str, float]:
    """A family's `example_format` as per-document shares: one format name means every document."""
    return {example_format: 1.0} if isinstance(example_format, str) else dict(example_format)


def arithmetic_episodes(
    weights: dict[str, float], rng: np.random.Generator, encode: Callable[[str], list[int]], *, held_out: bool,
    n_ctx: int, max_examples: int, example_format: str | dict[str, float] = "plain",
) -> Iterator[Encoded]:
    """An endless stream of `arithmetic` documents shaped like k-shot prompts: examples of one operation and one
    example format (each drawn per document in proportion to its weight), as many as fit in `n_ctx` up to
    `max_examples`."""
    shares = {fmt: w for fmt, w in format_shares(example_format).items() if w > 0}
    streams = {(name, fmt): mixed_examples({name: 1.0}, rng, encode, held_out=held_out, example_format=fmt)
               for name, w in weights.items() if w > 0 for fmt in shares}
    # a single format draws nothing from `rng`, so a one-format corpus is the stream it was before mixtures
    formats = _weighted(shares, rng) if len(shares) > 1 else itertools.repeat(next(iter(shares)))
    pending = {}
    for name in _weighted(weights, rng):
        stream = (name, next(formats))
        ids, spans = pending.pop(stream, None) or next(streams[stream])
        while len(spans) < max_examples:
            more = next(streams[stream])
            if len(ids) + len(more[0]) > n_ctx:
                pending[stream] = more  # starts the next document of this operation and format
                break
            spans += [(len(ids) + first, len(ids) + end) for first, end in more[1]]
            ids = ids + more[0]
        yield ids, spans


def modified_documents(
    weights: dict[str, float], rng: np.random.Generator, encode: Callable[[str], list[int]], *, lines: int = 6,
    plus_one_share: float = 0.5,
) -> Iterator[Encoded]:
    """An endless stream of `modified_arithmetic` documents: the header, then `lines` lines of one operation,
    every result supervised. A share `plus_one_share` of the documents (drawn per document) add 1 to every
    result, the rest are ordinary arithmetic: below 0.5, ordinary arithmetic is the prior that a pretrained
    model brings, and only the lines before a query can tell that +1 applies. Operands 0..999 as in BIG-bench's
    items; benchmark problems are never drawn."""
    for name in _weighted(weights, rng):
        op, modifier = OPERATIONS[name], int(rng.random() < plus_one_share)
        ids, spans = encode(MODIFIED_HEADER), []
        while len(spans) < lines:
            a, b = (int(x) for x in rng.integers(0, MODIFIED_OPERAND_LIMIT, size=2))
            if not trainable(op.symbol, a, b):
                continue
            prompt = encode(MODIFIED_LINE.format(a=a, symbol=op.symbol, b=b))
            answer = encode(f" {op.apply(a, b) + modifier}{STOP}")  # the output prefix " " supervised too
            spans.append((len(ids) + len(prompt), len(ids) + len(prompt) + len(answer)))
            ids += prompt + answer
        yield ids, spans


def training_documents(document: str, weights: dict[str, float], rng: np.random.Generator,
                       encode: Callable[[str], list[int]], *, held_out: bool, n_ctx: int, max_examples: int,
                       example_format: str | dict[str, float] = "plain",
                       plus_one_share: float = 0.5) -> tuple[Iterator[Encoded], str]:
    """The document stream of a corpus format and the text between consecutive documents in a row (each
    document already ends in STOP): BIG-bench's few-shot separator less that stop."""
    if document == "modified_arithmetic":
        # separator "\n\n" in BIG-bench's task
        return modified_documents(weights, rng, encode, plus_one_share=plus_one_share), "\n"
    return arithmetic_episodes(weights, rng, encode, held_out=held_out, n_ctx=n_ctx, max_examples=max_examples,
                               example_format=example_format), EXAMPLE_SEPARATOR.removeprefix(STOP)
