import numpy as np
import pytest

from emergence import metrics


def test_target_ce_per_token_and_p_all_tokens():
    logprob = np.array([-2.0, -0.5])
    tokens = np.array([4, 1])
    assert metrics.target_ce_per_token(logprob, tokens) == pytest.approx([0.5, 0.5])
    assert metrics.p_all_tokens(logprob) == pytest.approx(np.exp([-2.0, -0.5]))


def test_p_all_tokens_is_p_to_the_l():
    p, length = 0.8, 5
    assert metrics.p_all_tokens(np.array([length * np.log(p)]))[0] == pytest.approx(p**length)


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic():
    values = np.r_[np.ones(30), np.zeros(70)]
    low, high = metrics.bootstrap_ci(values, n_resamples=2000, seed=3)
    assert low < 0.3 < high
    assert 0.18 < low < 0.25 and 0.35 < high < 0.42  # binomial sd ~ 0.046
    assert (low, high) == metrics.bootstrap_ci(values, n_resamples=2000, seed=3)


def test_bootstrap_of_a_constant_has_zero_width():
    assert metrics.bootstrap_ci(np.ones(10), n_resamples=100, seed=0) == (1.0, 1.0)


def test_seed_for_is_stable_across_processes():
    assert metrics.seed_for("m", "t", "s", base=0) == 391173195  # same value in every process
    assert metrics.seed_for("m", "t", "s") == metrics.seed_for("m", "t", "s")
    assert metrics.seed_for("m", "t", "s") != metrics.seed_for("m", "t", "x")


@pytest.mark.parametrize("a, b, distance", [("579", "579", 0), ("578", "579", 1), ("57", "579", 1),
                                              ("1579", "579", 1), ("", "579", 3), ("975", "579", 2)])
def test_edit_distance(a, b, distance):
    assert metrics.edit_distance(list(a), list(b)) == distance


def test_calibration_metrics():
    label = np.array([1, 0, 1, 0])
    assert metrics.brier(label, label) == 0.0
    assert metrics.brier(np.full(4, 0.5), label) == pytest.approx(0.25)
    assert metrics.expected_calibration_error(np.full(4, 0.5), label) == pytest.approx(0.0)  # 0.5 said, 50% true
    assert metrics.expected_calibration_error(np.full(4, 0.9), label) == pytest.approx(0.4)
