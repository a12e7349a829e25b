"""Emergence statistics on synthetic curves with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from emergence import analysis, metrics

X = np.arange(10, 20, dtype=float)  # log10 FLOPs of ten models
STEP = np.where(X >= 16, 0.9, 0.0)  # absent, then present from the seventh model on
LINE = np.linspace(0.05, 0.95, len(X))
KNEE_LATE = 1 / (1 + np.exp(-3 * (X - 17)))  # sigmoid whose knee lies in the larger half


def test_a_step_emerges_at_the_step():
    assert analysis.emergence_index(STEP, STEP - 0.05, baseline=0.0, margin=0.05) == 6


def test_noise_below_the_margin_does_not_emerge():
    assert analysis.emergence_index(np.full(10, 0.04), np.full(10, 0.01), baseline=0.0, margin=0.05) is None


def test_emergence_needs_every_larger_model_above_the_bar():
    flicker = np.array([0, 0, 0.5, 0, 0, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert analysis.emergence_index(flicker, flicker - 0.1, baseline=0.0, margin=0.05) == 5


def test_a_straight_line_has_low_breakthroughness_high_linearity_and_is_predicted():
    assert analysis.breakthroughness(LINE) == pytest.approx(len(X) - 1)
    assert analysis.linearity(X, LINE) == pytest.approx(1.0)
    assert analysis.predictability_error(X, LINE, "linear") < 1e-9
    assert analysis.breakthroughness(STEP) > 10 * analysis.breakthroughness(LINE)
    assert analysis.linearity(X, STEP) == pytest.approx(1 / 3)  # one of nine steps carries the gain


def test_a_late_sigmoid_is_not_predictable_from_the_small_half():
    assert analysis.predictability_error(X, KNEE_LATE, "linear") > 0.4
    assert analysis.predictability_error(X, KNEE_LATE, "sigmoid", bounds=(0.0, 1.0)) > 0.3


def test_an_early_sigmoid_is_predicted_by_the_sigmoid_fit():
    knee_early = 1 / (1 + np.exp(-1.0 * (X - 13.5)))
    assert analysis.predictability_error(X, knee_early, "sigmoid", bounds=(0.0, 1.0)) < 0.02
    assert np.isnan(analysis.predictability_error(X, knee_early, "sigmoid"))  # no bounds, no sigmoid


def test_orientation_flips_for_a_falling_curve():
    assert analysis.breakthroughness(LINE[::-1]) == pytest.approx(-(len(X) - 1))
    assert analysis.linearity(X, LINE[::-1]) == pytest.approx(1.0)  # a straight fall is as linear as a rise


def _paper(exact_match: np.ndarray, n: int = 250) -> dict:
    """Exact match per model with its exact binomial interval over n items."""
    bounds = np.array([metrics.clopper_pearson(round(p * n), n) for p in exact_match])
    return {"y": exact_match, "low": bounds[:, 0], "high": bounds[:, 1]}


def test_mirage_verdict_on_a_power_law_ce_and_on_a_ce_that_jumps():
    power_law = 8 * 10 ** (-0.35 * (X - 10))
    verdict = analysis.mirage_verdict(X, _paper(np.exp(-4 * power_law)), {"target_ce_per_token": power_law},
                                      paper_metric="exact_match", chance=0.0, margin=0.05)
    assert verdict["verdict"] == "mirage" and verdict["continuous_metric"] == "target_ce_per_token"
    jumpy = np.where(X >= 16, 0.2, 2.0)
    verdict = analysis.mirage_verdict(X, _paper(np.exp(-4 * jumpy)), {"target_ce_per_token": jumpy},
                                      paper_metric="exact_match", chance=0.0, margin=0.05)
    assert verdict["verdict"] == "real jump" and verdict["looks_emergent"] and not verdict["continuous_smooth"]


def test_mirage_verdict_prefers_answer_only_ce_and_uses_brier_for_multiple_choice():
    power_law = 8 * 10 ** (-0.35 * (X - 10))
    jumpy = np.where(X >= 16, 0.2, 2.0)
    verdict = analysis.mirage_verdict(X, _paper(np.exp(-4 * power_law)),
                                      {"answer_ce_per_token": power_law, "target_ce_per_token": jumpy},
                                      paper_metric="exact_match", chance=0.0, margin=0.05)
    assert verdict["continuous_metric"] == "answer_ce_per_token" and verdict["verdict"] == "mirage"
    grade = 0.25 + 0.75 * np.where(X >= 16, 1.0, 0.0)
    verdict = analysis.mirage_verdict(X, _paper(grade), {"brier_choices": np.linspace(0.75, 0.1, len(X))},
                                      paper_metric="mc_grade", chance=0.25, margin=0.05)
    assert verdict["verdict"] == "mirage" and verdict["continuous_metric"] == "brier_choices"


def test_a_smooth_rise_is_no_jump():
    verdict = analysis.mirage_verdict(X, _paper(LINE), {"target_ce_per_token": np.linspace(2, 1, len(X))},
                                      paper_metric="exact_match", chance=0.0, margin=0.05)
    assert verdict["verdict"] == "no jump"


def _cells(values_by_seed: dict[int, list[float]]) -> pd.DataFrame:
    """Final-checkpoint cells of a 3-size ladder trained with several seeds (exact match given per seed)."""
    rows = []
    for seed, values in values_by_seed.items():
        for size, (flops, em) in enumerate(zip([1e10, 1e11, 1e12], values)):
            rows.append({"task": "t", "metric": "exact_match", "strategy": "0shot", "family": "ladder", "run": f"ladder-d{size}L1-s{seed}",
                         "final_checkpoint": True, "train_flops": flops * (1 + seed / 100), "params": 10**size,
                         "nonembedding_params": 10**size, "heldout_loss": 1.0, "random_baseline": 0.0,
                         "exact_match": em, "exact_match_ci_low": em - 0.1, "exact_match_ci_high": em + 0.1,
                         "target_ce_per_token": 2.0 - size, "target_ce_per_token_ci_low": 1.9 - size,
                         "target_ce_per_token_ci_high": 2.1 - size, "token_edit_distance": 3.0 - size,
                         "token_edit_distance_ci_low": 2.9 - size, "token_edit_distance_ci_high": 3.1 - size})
    return pd.DataFrame(rows)


def test_scale_points_average_seeds_with_a_t_interval():
    points = analysis.scale_points(_cells({0: [0.0, 0.2, 0.9], 1: [0.0, 0.4, 0.8], 2: [0.0, 0.3, 1.0]}))
    assert len(points) == 3 and (points.n_seeds == 3).all()
    mid = points.iloc[1]
    assert mid.exact_match == pytest.approx(0.3)
    assert (mid.exact_match_min, mid.exact_match_max) == (0.2, 0.4)
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)  # sd of (0.2, 0.4, 0.3) is 0.1
    assert mid.exact_match_ci_low == pytest.approx(0.3 - half)


def test_one_seed_keeps_the_sampling_interval_and_emergence_uses_seed_means():
    points = analysis.scale_points(_cells({0: [0.0, 0.5, 0.9]}))
    assert points.iloc[1].exact_match_ci_low == pytest.approx(0.4)
    table = analysis.emergence_table(_cells({0: [0.0, 0.2, 0.9], 1: [0.0, 0.4, 0.8], 2: [0.0, 0.3, 1.0]}))
    exact = table[table.metric == "exact_match"].iloc[0]
    assert exact.n_seeds == 3 and exact.emerged
    assert exact.emergence_flops == pytest.approx(1e11 * 1.01)  # mean FLOPs of the middle size's seeds


def test_augmentation_helps_from_the_scale_where_its_interval_clears_zero():
    plain = _cells({0: [0.0, 0.0, 0.05], 1: [0.0, 0.01, 0.0], 2: [0.0, 0.0, 0.02]})
    augmented = _cells({0: [0.0, 0.4, 0.9], 1: [0.01, 0.5, 0.95], 2: [0.0, 0.45, 0.85]})
    augmented["family"], augmented["strategy"] = "scratch", "scratchpad"
    augmented["run"] = augmented.run.str.replace("ladder-", "scratch-")
    comparison = {"name": "scratchpad", "with": {"family": "scratch", "strategy": "scratchpad"},
                  "without": {"family": "ladder", "strategy": "0shot"}}
    table = analysis.augmentation_table(pd.concat([plain, augmented]), [comparison])
    assert list(table["shape"]) == ["d0L1", "d1L1", "d2L1"]
    assert table.difference.round(3).tolist() == [0.003, 0.447, 0.877]
    assert table.difference_ci_low.iloc[0] < 0 < table.difference_ci_low.iloc[1]
    assert (table.helps_from_params == 10).all() and (table.n_seeds == 3).all()
