import copy

import pytest
import yaml

from emergence.config import ConfigError, check_config
from emergence.study import plan_study
from tests.conftest import REPO

BASE = yaml.safe_load((REPO / "config.yaml").read_text())


def check(mutate):
    config = copy.deepcopy(BASE)
    mutate(config)
    return check_config(config)


def test_default_config_is_valid_and_gets_defaults():
    config = check_config(BASE)
    assert config["study"] == "ladder"
    assert config["evaluation"]["batch_size"] == 64
    assert config["models"][0]["seeds"] == [0]


def fault(mutate, message, id):
    """A case of the `faults` suite (docs/reliability.md lists it by its id)."""
    return pytest.param(mutate, message, marks=pytest.mark.faults, id=id)


@pytest.mark.parametrize(
    "mutate, message",
    [
        fault(lambda c: c["models"][0].update(widthz=[16]), "unknown config key 'models\\[0\\].widthz'.*Did you mean 'widths'",
              "unknown-key-typo"),
        fault(lambda c: c.update(colour="red"), "unknown config key 'colour': valid keys here are analysis",
              "unknown-key-top-level"),
        fault(lambda c: c.update(tasks=["addition_3digits"]), "unknown task 'addition_3digits'.*Did you mean 'addition_3digit'",
              "unknown-task"),
        fault(lambda c: c.update(strategies=["fewshot"]), "unknown strategy 'fewshot'; valid: <k>shot, cot, instruction, p_true, scratchpad",
              "unknown-strategy"),
        (lambda c: c["models"][0].update(source="hub"), "models\\[0\\].source = 'hub' is not valid; choose one of ladder, hf"),
        fault(lambda c: c.update(study="models"), "study 'models' would share results/models/ with the pipeline's own folder",
              "study-reserved-name"),
        (lambda c: c["models"][0].update(source="hf"), "models\\[0\\] \\(ladder\\): source: hf needs a suite \\(pythia"),
        (lambda c: c.update(models=[{"name": "p", "source": "hf", "suite": "pythia", "sizes": ["70M"]}]),
         "sizes: '70M' is not a pythia size; valid: 14m, .*Did you mean '70m'"),
        (lambda c: c.update(models=[{"name": "m", "source": "local", "members": [{"path": "/no/such/model"}]}]),
         "members\\[0\\].path: '/no/such/model' is not a directory"),
        fault(lambda c: c["models"][0].update(widths=[0]), "widths\\[0\\] = 0 is out of range", "zero-size"),
        fault(lambda c: c["task_defaults"].update(n_eval=-5),
              "task_defaults.n_eval = -5 is out of range: -5 is less than the minimum of 1", "negative-size"),
        fault(lambda c: c.update(evaluation={"batch_size": 0}),
              "evaluation.batch_size = 0 is not valid; give an integer >= 1 or 'auto'", "zero-batch-size"),
        fault(lambda c: c["models"][0].update(train_tokens="many"), "train_tokens must be of type integer", "wrong-type"),
        fault(lambda c: c["models"][0].update(lr=float("nan")), "models\\[0\\].lr = nan is not a finite number",
              "not-a-number"),
        fault(lambda c: c["models"].append(copy.deepcopy(c["models"][0])), "family 'ladder' is defined twice",
              "duplicate-model-names"),
        fault(lambda c: c.update(study="../elsewhere"), "study = '../elsewhere' is not allowed", "study-not-a-path"),
        fault(lambda c: c.update(strategies=["80shot"]),
              "'80shot' needs 80 exemplars but task 'arithmetic.2_digit_addition' has a few-shot pool of 50", "kshot-above-pool"),
        fault(lambda c: c.update(models=[]), "config models is empty", "empty-model-list"),
        (lambda c: c.update(strategies=["scratchpad"]), "needs the document field 'scratchpad', which task 'arithmetic.2_digit_addition' does not have"),
        (lambda c: c["models"][0].update(example_format="scratchpad",
                                         operations={"addition_2digit": 1, "subtraction_2digit": 1}),
         "'subtraction_2digit' has no scratchpad format"),
        (lambda c: c["models"][0].update(example_format={"plain": 1, "tenfould": 3}),
         "example_format = .*tenfould.* is not valid; give one of plain, scratchpad, tenfold or a mapping"),
        (lambda c: c["models"][0].update(example_format={"plain": 0, "tenfold": 0}),
         "models\\[0\\].example_format: every share is 0"),
        (lambda c: c["models"][0].update(plus_one_share=1.5),
         "models\\[0\\].plus_one_share = 1.5 is out of range: 1.5 is greater than the maximum of 1"),
    ],
)
def test_bad_config_names_the_problem(mutate, message):
    with pytest.raises(ConfigError, match=message):
        check(mutate)


def test_a_strategy_too_long_for_the_ladder_context_is_refused():
    with pytest.raises(ConfigError, match="strategy 'cot' on task 'addition_3digit' needs up to \\d+ tokens.*n_ctx=128"):
        check(lambda c: c.update(tasks=["addition_3digit"], strategies=["0shot", "cot"], task_overrides={}))
    config = check(lambda c: (c.update(tasks=["addition_3digit"], strategies=["0shot", "cot"], task_overrides={}),
                              c["models"][0].update(n_ctx=1024)))
    assert config["strategies"] == ["0shot", "cot"]


def test_the_fewshot_preset_restates_the_default_ladder_exactly():
    """presets/fewshot.yaml copies the default's ladder family (an overlay replaces the whole `models` list): the
    copy must plan the default's very runs, so the preset reuses them instead of silently training a drifted one."""
    default = plan_study(check_config(copy.deepcopy(BASE)), REPO)
    preset = plan_study(check_config({**copy.deepcopy(BASE), **yaml.safe_load((REPO / "presets/fewshot.yaml")
                                                                                .read_text())}), REPO)
    assert set(default.runs) <= set(preset.runs)
