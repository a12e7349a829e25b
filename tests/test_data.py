import itertools
import json
import re

import numpy as np
import pytest

from emergence.ladder import data
from emergence.ladder.tokenizer import build_tokenizer
from emergence.tasks.arithmetic import write_arithmetic_task


def test_training_stream_never_yields_a_held_out_problem():
    rng = np.random.default_rng(0)
    for op in data.OPERATIONS:
        for a, b, _ in itertools.islice(data.sample_problems(op, rng, held_out=False), 3000):
            assert not data.is_held_out(op, a, b)


@pytest.mark.parametrize("weights", [{"a": 3.0, "b": 1.0}, {"a": 1.0}, {"a": 0.2, "b": 0.0, "c": 0.7, "d": 0.1}])
def test_weighted_draws_are_numpys_weighted_choice(weights):
    """The corpus stream, and with it every trained model, is the one `rng.choice` drew before the fast path."""
    names = [name for name, w in weights.items() if w > 0]
    p = np.array([weights[name] for name in names])
    reference = np.random.default_rng(7)
    expected = [names[int(reference.choice(len(names), p=p / p.sum()))] for _ in range(5000)]
    assert list(itertools.islice(data._weighted(weights, np.random.default_rng(7)), 5000)) == expected


def test_task_items_are_held_out_distinct_and_disjoint_across_splits(tmp_path):
    for op in data.OPERATIONS:
        write_arithmetic_task(op, tmp_path / op, n_eval=300, n_fewshot_pool=40, seed=7)
        test = [json.loads(line) for line in (tmp_path / op / "test.jsonl").read_text().splitlines()]
        fewshot = [json.loads(line) for line in (tmp_path / op / "fewshot.jsonl").read_text().splitlines()]
        pairs = [(r["a"], r["b"]) for r in test + fewshot]
        assert len(test) == 300 and len(fewshot) == 40
        assert len(set(pairs)) == len(pairs)
        assert all(data.is_held_out(op, a, b) for a, b in pairs)
        assert all(str(data.OPERATIONS[op].apply(r["a"], r["b"])) == r["answer"] for r in test)


def test_held_out_part_is_about_a_tenth():
    op = "multiplication_2digit"
    held = sum(data.is_held_out(op, a, b) for a in range(10, 100) for b in range(10, 100))
    assert 0.08 < held / 8100 < 0.12


def test_packed_rows_fill_up_and_supervise_only_answers_and_stops():
    tok = build_tokenizer()
    encode = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    rng = np.random.default_rng(1)
    examples = data.mixed_examples({"addition_3digit": 1.0}, rng, encode, held_out=False)
    ids, labels, n_tokens = data.pack_rows(examples, 4, 128, [], pad_id=0, max_examples=64)
    assert n_tokens == int((ids != 0).sum())
    for row in range(4):
        text = tok.decode([i for i in ids[row] if i != 0])
        supervised = tok.decode([int(i) for i in labels[row] if i != -100])
        blocks = text.split("\n\n")
        assert len(blocks) == 3 and 128 - len(text) < len(blocks[0]) + 1  # full: the next example would not fit
        assert supervised == "".join(" " + b.split("A: ")[1].strip() + "\n" for b in blocks)


def test_rows_hold_at_most_examples_per_row():
    encode = lambda s: [ord(c) for c in s]  # noqa: E731
    examples = data.mixed_examples({"addition_2digit": 1.0}, np.random.default_rng(0), encode, held_out=False)
    ids, _, _ = data.pack_rows(examples, 3, 128, [], pad_id=0, max_examples=1)
    assert all("".join(chr(i) for i in row if i).count("Q:") == 1 for row in ids)


def test_example_formats_are_drawn_per_document_in_their_shares():
    encode = lambda s: [ord(c) for c in s]  # noqa: E731
    documents = data.arithmetic_episodes({"addition_2digit": 1.0}, np.random.default_rng(0), encode, held_out=False,
                                         n_ctx=128, max_examples=4, example_format={"plain": 1, "tenfold": 3})
    tenfold = []
    for ids, _ in itertools.islice(documents, 400):
        problems = [(int(a), int(b), int(answer)) for a, b, answer in
                    re.findall(r"What is (\d+) plus (\d+)\?\nA: (\d+)\n", "".join(chr(i) for i in ids))]
        assert len(problems) == 4
        scales = {answer / (a + b) for a, b, answer in problems}
        assert scales in ({1}, {10})  # one convention per document, every answer in it
        tenfold.append(scales == {10})
    assert 0.7 < np.mean(tenfold) < 0.8


def test_one_format_draws_nothing_so_a_plain_corpus_is_unchanged():
    encode = lambda s: [ord(c) for c in s]  # noqa: E731
    streams = [data.arithmetic_episodes({"addition_2digit": 3.0, "subtraction_2digit": 1.0},
                                        np.random.default_rng(5), encode, held_out=False, n_ctx=128, max_examples=4,
                                        example_format=fmt) for fmt in ("plain", {"plain": 1.0, "tenfold": 0.0})]
    assert list(itertools.islice(streams[0], 50)) == list(itertools.islice(streams[1], 50))


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_plus_one_share_is_the_share_of_modified_documents_whose_results_carry_plus_one(share):
    """From the family setting to the training rows: each modified_arithmetic document is +0 or +1 throughout,
    +1 in the configured share of documents."""
    from emergence.ladder.train import TrainSettings, packed_rows

    settings = TrainSettings.from_config({"width": 16, "document": "modified_arithmetic", "n_ctx": 256,
                                          "operations": {"addition_3digit": 1.0}, "plus_one_share": share})
    ids, _, _ = packed_rows(settings, lambda text: [ord(ch) for ch in text], 800, held_out=False, seed=0)
    offsets = []
    for row in ids:
        lines = re.findall(r"(\d+) \+ (\d+) -> (\d+)", "".join(chr(i) for i in row if i))
        document = {int(c) - int(a) - int(b) for a, b, c in lines}
        assert len(lines) == 6 and len(document) == 1  # one document per 256-token row, one modification
        offsets.append(document.pop())
    assert set(offsets) <= {0, 1} and abs(np.mean(offsets) - share) < 0.04


@pytest.mark.parametrize("a, b, trace", [(123, 456, "3+6+0=09 2+5+0=07 1+4+0=05 | 579"),
                                         (999, 999, "9+9+0=18 9+9+1=19 9+9+1=19 | 1998")])
def test_scratchpad_is_fixed_width_least_significant_digit_first(a, b, trace):
    assert data.OPERATIONS["addition_3digit"].scratchpad(a, b) == trace
    assert data.OPERATIONS["subtraction_3digit"].scratchpad(a, b) is None
