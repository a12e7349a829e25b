"""lm-eval on a real (tiny) ladder checkpoint under strategies of each kind."""

import json

import numpy as np
import pytest

from emergence.evaluate import SAMPLE_COLUMNS, evaluate_cells
from emergence.strategies import load_strategy
from emergence.tasks.arithmetic import write_arithmetic_task


@pytest.fixture(scope="module")
def model_and_task(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("evaluate")
    (root / "model").symlink_to(tiny_model)  # n_ctx 1024: room for cot prompts
    write_arithmetic_task("addition_3digit", root / "task", n_eval=6, n_fewshot_pool=4, seed=0)
    return root


def test_p_true_cells_record_calibrated_judgements(model_and_task):
    root = model_and_task
    table = evaluate_cells(root / "model", root / "task", load_strategy("p_true"), root / "p_true.parquet")
    docs = [json.loads(line) for line in (root / "task/test.jsonl").read_text().splitlines()]
    assert list(table.columns) == SAMPLE_COLUMNS and len(table) == 6
    assert table.p_true.between(0, 1).all() and (table.random_baseline == 0.5).all()
    assert table.label_true.tolist() == [float(d["proposed_correct"]) for d in docs]
    assert (table.target == np.where(table.label_true == 1, "True", "False")).all()
    assert ((table.answer == table.target) == (table.exact_match == 1)).all()
    assert all(f"Proposed answer: {d['proposed']}" in p for d, p in zip(docs, table.prompt))


def test_scratchpad_cells_score_the_extracted_answer_and_the_whole_trace(model_and_task):
    root = model_and_task
    table = evaluate_cells(root / "model", root / "task", load_strategy("scratchpad"), root / "scratch.parquet")
    docs = [json.loads(line) for line in (root / "task/test.jsonl").read_text().splitlines()]
    assert table.completion.tolist() == [d["scratchpad"] for d in docs]
    assert table.target.tolist() == [d["answer"] for d in docs]
    assert (table.target_tokens == table.completion.str.len() + 1).all()  # the whole trace is scored
    # the greedy p^L side scores the answer and the stop after the gold trace
    assert (table.answer_tokens == table.target.str.len() + 2).all()  # " 1511\n": the space lm-eval moves over, the stop
    assert (table.answer_logprob < 0).all() and table.is_greedy_stop.isin([True, False]).all()
    assert (table.prompt_truncated == False).all()  # noqa: E712
    assert table.p_true.isna().all() and (table.random_baseline == 0).all()


def test_cot_prompts_show_worked_rationales_and_extract_the_final_answer(model_and_task):
    root = model_and_task
    table = evaluate_cells(root / "model", root / "task", load_strategy("cot"), root / "cot.parquet")
    assert (table.prompt.str.count("The answer is") == 2).all()  # two worked exemplars before each query
    assert table.completion.str.startswith("Add the digits from the right.").all()
    assert all(c.endswith(f"The answer is {t}.") for c, t in zip(table.completion, table.target))
    assert (table.answer_tokens < table.target_tokens).all()  # the answer and what follows it, not the rationale
    extracted = table.generation.str.extract(r"The answer is (-?\d+)", expand=False).fillna("")
    assert (table.answer == extracted).all()
