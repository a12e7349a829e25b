import json

import pytest
import yaml

from emergence.strategies import Strategy, load_strategy
from emergence.tasks.arithmetic import write_arithmetic_task
from emergence.tasks.views import write_views


def test_kshot_needs_no_file_and_yaml_strategies_load():
    assert load_strategy("3shot") == Strategy(name="3shot", num_fewshot=3, description="plain 3-shot prompting")
    scratchpad = load_strategy("scratchpad")
    assert scratchpad.completion == "scratchpad" and scratchpad.answer_pattern


def test_a_users_strategy_yaml_is_found_and_bad_keys_are_named(tmp_path):
    (tmp_path / "terse.yaml").write_text(yaml.safe_dump({"instruction": "Numbers only.", "num_fewshot": 1}))
    assert load_strategy("terse", [tmp_path]).instruction == "Numbers only."
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"num_fewshots": 1}))
    with pytest.raises(ValueError, match=r"unknown keys \['num_fewshots'\]; valid keys: answer_pattern"):
        load_strategy("typo", [tmp_path])
    with pytest.raises(ValueError, match="unknown strategy 'nope'; valid: <k>shot, cot, instruction, p_true, scratchpad, terse"):
        load_strategy("nope", [tmp_path])


def test_scratchpad_views_show_traces_in_exemplars_and_score_the_answer(tmp_path):
    write_arithmetic_task("addition_3digit", tmp_path / "task", n_eval=4, n_fewshot_pool=4, seed=0)
    names = write_views(tmp_path / "task", load_strategy("scratchpad"), tmp_path / "views")
    gen = yaml.safe_load((tmp_path / "views" / f"{names['gen']}.yaml").read_text())
    ll = yaml.safe_load((tmp_path / "views" / f"{names['ll']}.yaml").read_text())
    assert gen["doc_to_target"] == "answer" and gen["fewshot_config"]["doc_to_target"] == "scratchpad"
    assert ll["doc_to_target"] == "scratchpad"  # a field: BIG-bench's output prefix "A: " ends the query
    assert gen["filter_list"][0]["filter"][0]["regex_pattern"] == load_strategy("scratchpad").answer_pattern
    record = json.loads((tmp_path / "task" / "test.jsonl").read_text().splitlines()[0])
    assert record["scratchpad"].endswith(f"| {record['answer']}")


def test_a_strategy_needing_a_missing_field_is_refused(tmp_path):
    write_arithmetic_task("multiplication_2digit", tmp_path / "task", n_eval=4, n_fewshot_pool=4, seed=0)
    with pytest.raises(ValueError, match="needs the field 'scratchpad', which task 'multiplication_2digit'"):
        write_views(tmp_path / "task", load_strategy("scratchpad"), tmp_path / "views")
