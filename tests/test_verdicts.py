"""Known-answer tests of the verdicts, intervals and forecasts: synthetic lines whose answer is known, run through
the real tables (cells and per-item samples shaped as `aggregate` writes them)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence import analysis, metrics
from emergence.analysis import intervals

X = np.arange(10, 20, dtype=float)  # log10 FLOPs of ten models
N_ITEMS = 250
POWER_LAW_CE = 8 * 10 ** (-0.35 * (X - 10))  # per-token CE falling as a power law in compute
JUMP_CE = np.where(X >= 16, 0.2, 2.0)  # CE that itself jumps between the sixth and seventh model


def line(exact_match, ce, *, x=X, seeds=(0,), task="t", strategy="0shot", family="ladder", spread=0.0):
    """(cells, samples) of one line: `exact_match` per model realised as k = round(p n) correct items, CE per
    token the same on every item; seeds shift exact match by +-`spread`."""
    cells, samples = [], []
    for size, (xi, p, c) in enumerate(zip(x, exact_match, ce)):
        for seed in seeds:
            model = f"{family}-d{size}L1-s{seed}-step1"
            k = int(round(np.clip(p + spread * (seed - np.mean(seeds)), 0, 1) * N_ITEMS))
            correct = np.r_[np.ones(k), np.zeros(N_ITEMS - k)]
            low, high = metrics.clopper_pearson(k, N_ITEMS)
            cells.append({"model": model, "task": task, "metric": "exact_match", "strategy": strategy,
                          "family": family, "run": f"{family}-d{size}L1-s{seed}", "final_checkpoint": True,
                          "train_flops": 10**xi, "params": 10 ** (xi / 2), "nonembedding_params": 10 ** (xi / 2),
                          "heldout_loss": 1.0, "random_baseline": 0.0, "n": N_ITEMS, "exact_match": k / N_ITEMS,
                          "exact_match_ci_low": low, "exact_match_ci_high": high, "target_ce_per_token": c,
                          "target_ce_per_token_ci_low": c * 0.98, "target_ce_per_token_ci_high": c * 1.02,
                          "target_tokens_mean": 4.0})
            samples.append(pd.DataFrame({"model": model, "task": task, "strategy": strategy, "subtask": "",
                                         "doc_id": np.arange(N_ITEMS), "exact_match": correct,
                                         "target_ce_per_token": c}))
    return pd.DataFrame(cells), pd.concat(samples, ignore_index=True)


def verdict_of(cells, samples=None):
    table = analysis.emergence_table(cells, samples, n_resamples=200)
    return table[table.metric == "exact_match"].iloc[0]


def test_mirage_power_law_ce_with_exact_match_p_to_the_4_is_a_mirage():
    row = verdict_of(*line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE))
    assert row.verdict == "mirage" and row.mirage and row.looks_emergent and row.continuous_smooth
    assert row.pl_exponent == pytest.approx(4, rel=0.05)  # p^L recovers L = 4
    assert row.emerged and 0 < row.emergence_flops < 10**19


def test_mirage_test_calls_a_genuine_ce_jump_a_real_jump():
    row = verdict_of(*line(np.exp(-4 * JUMP_CE), JUMP_CE))
    assert row.verdict == "real jump" and not row.mirage and row.looks_emergent and not row.continuous_smooth


def test_mirage_with_three_models_is_undetermined_not_no():
    x = np.array([12.0, 14.0, 16.0])
    ce = 8 * 10 ** (-0.35 * (x - 10))
    row = verdict_of(*line(np.exp(-4 * ce), ce, x=x))
    assert row.verdict == "undetermined" and "too few models" in row.verdict_reason and not row.mirage


def test_mirage_flat_zeros_have_not_emerged():
    row = verdict_of(*line(np.zeros(len(X)), POWER_LAW_CE))
    assert row.verdict == "not emerged" and not row.emerged
    assert row.emergence_flops_ci_reason == "not emerged"


def test_mirage_without_a_continuous_metric_is_undetermined():
    cells, _ = line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE)
    cells[["target_ce_per_token", "target_ce_per_token_ci_low", "target_ce_per_token_ci_high"]] = np.nan  # published
    row = verdict_of(cells)
    assert row.verdict == "undetermined" and row.verdict_reason == "no continuous metric"


def test_interval_of_0_of_250_is_exact_not_zero_width():
    low, high = metrics.clopper_pearson(0, 250)
    assert low == 0 and high == pytest.approx(0.0146, abs=5e-4)
    assert metrics.sample_ci(np.zeros(250), n_resamples=100, seed=0) == (low, high)
    assert metrics.bootstrap_ci(np.zeros(250), n_resamples=100, seed=0) == (0.0, 0.0)  # what it replaces
    points = analysis.scale_points(*line(np.zeros(len(X)), POWER_LAW_CE), n_resamples=200)
    assert points.exact_match_ci_high.min() == pytest.approx(high)


def test_interval_of_a_proportion_from_its_count_or_its_stderr():
    assert metrics.proportion_ci(0.3, n=100) == metrics.clopper_pearson(30, 100)
    low, high = metrics.proportion_ci(0.3, stderr=np.sqrt(0.3 * 0.7 / 100))  # Wilson at the implied n = 100
    assert low == pytest.approx(0.219, abs=1e-3) and high == pytest.approx(0.396, abs=1e-3)
    assert metrics.proportion_ci(0.0, stderr=0.01) == (0.0, pytest.approx(0.0196, abs=1e-4))


def test_interval_of_the_emergence_scale_brackets_it_in_flops():
    row = verdict_of(*line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE))
    assert row.emergence_flops_ci_low <= row.emergence_flops <= row.emergence_flops_ci_high
    assert row.emergence_flops_ci_reason == ""
    flat_then_noisy = np.r_[np.zeros(6), [0.06, 0.07, 0.08, 0.09]]  # barely over chance + 0.05: uncertain scale
    noisy = verdict_of(*line(flat_then_noisy, POWER_LAW_CE))
    assert not noisy.emerged or np.isnan(noisy.emergence_flops_ci_high) or noisy.emergence_flops_ci_reason


def test_interval_over_items_and_seeds_includes_seed_variation():
    cells, samples = line(np.full(len(X), 0.5), POWER_LAW_CE, seeds=(0, 1, 2), spread=0.1)
    points = analysis.scale_points(cells, samples, n_resamples=400)
    one_seed = metrics.clopper_pearson(125, 250)
    widths = points.exact_match_ci_high - points.exact_match_ci_low
    assert (widths > 1.5 * (one_seed[1] - one_seed[0])).all()  # seeds 0.4, 0.5, 0.6: far wider than one cell's


def test_interval_paired_over_shared_items_is_narrower_than_unpaired():
    p = np.linspace(0.3, 0.7, len(X))
    plain_cells, plain = line(p, POWER_LAW_CE)
    more_cells, more = line(p + 0.02, POWER_LAW_CE, strategy="2shot")  # the same items right, plus 5 more
    comparison = [{"name": "shots", "with": {"strategy": "2shot"}, "without": {"strategy": "0shot"}}]
    cells, samples = pd.concat([plain_cells, more_cells]), pd.concat([plain, more])
    paired = analysis.augmentation_table(cells, comparison, samples=samples, n_resamples=400)
    unpaired = analysis.augmentation_table(cells, comparison)
    assert (paired.difference_interval == "paired bootstrap").all()
    assert (unpaired.difference_interval == "Newcombe (unpaired)").all()
    assert (paired.difference_ci_low > 0).all() and (unpaired.difference_ci_low < 0).all()


def test_breakthroughness_is_finite_and_reported_beside_a_line_and_a_step():
    step = np.r_[np.zeros(5), np.ones(5)]
    assert np.isfinite(analysis.breakthroughness(step)) and analysis.breakthroughness(np.zeros(5)) == 0
    line_score, step_score = analysis.breakthroughness_references(5, 1.0)
    assert line_score == pytest.approx(4.0) and step_score == pytest.approx(100.0)  # floor: 1% of the range


def test_no_table_holds_inf():
    cases = [line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE), line(np.exp(-4 * JUMP_CE), JUMP_CE, task="u"),
             line(np.zeros(len(X)), np.full(len(X), 2.0), task="v"),
             line(np.r_[np.zeros(9), 1.0], POWER_LAW_CE, task="w")]
    cells = pd.concat([c for c, _ in cases])
    samples = pd.concat([s for _, s in cases])
    emergence = analysis.emergence_table(cells, samples, n_resamples=200)
    forecast, held_out = analysis.forecast_table(cells, samples, emergence, n_resamples=200)
    for table in (emergence, forecast, held_out, analysis.pl_deviation(cells)):
        numbers = table.select_dtypes("number").to_numpy(dtype=float)
        assert not np.isinf(numbers).any()


def test_forecast_scores_each_forecaster_on_held_out_models():
    cells, samples = line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE)
    jump_cells, jump_samples = line(np.exp(-4 * JUMP_CE), JUMP_CE, task="jump")
    cells, samples = pd.concat([cells, jump_cells]), pd.concat([samples, jump_samples])
    emergence = analysis.emergence_table(cells, samples, n_resamples=200)
    table, held_out = analysis.forecast_table(cells, samples, emergence, n_resamples=200)
    assert len(table) == 2 and {"predicted", "observed", "abs_error", "coverage", "winner"} <= set(table.columns)
    mirage = table.set_index("task").loc["t"]
    assert mirage.winner == "pl" and mirage.pl_abs_error < 0.05  # p^L of the power law foresees the jump
    assert mirage.linear_abs_error > 0.3  # the straight line from the small half does not
    assert mirage.pl_coverage >= 0.8
    assert mirage.pl_emergence_flops == pytest.approx(mirage.observed_emergence_flops, rel=3)
    jump = table.set_index("task").loc["jump"]
    assert jump.abs_error > 0.2  # a real jump is not foreseen by any forecaster
    assert len(held_out) == 2 * 3 * 5 and held_out.covered.dtype == bool


def test_forecast_needs_four_models():
    x = np.array([12.0, 14.0, 16.0])
    cells, samples = line(np.zeros(3), np.ones(3), x=x)
    table, held_out = analysis.forecast_table(cells, samples, analysis.emergence_table(cells, samples))
    assert len(table) == 1 and "too few models" in table.note.iloc[0] and held_out.empty


def test_emergence_scale_interval_from_replicates():
    flops = 10.0 ** X[:4]
    y = np.array([0.0, 0.0, 0.5, 0.9])
    replicates = np.tile(y, (100, 1))
    assert intervals.emergence_scale_interval(flops, y, y - 0.1, replicates, 0.05) == (flops[2], flops[2], "")


def test_every_emergence_and_forecast_column_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### The emergence table"):readme.index("## Augmented prompting")]
    cells, samples = line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE)
    table = analysis.emergence_table(cells, samples, n_resamples=200)
    forecast, _ = analysis.forecast_table(cells, samples, table, n_resamples=200)
    forecaster_columns = {c.replace(f"{f}_", "<f>_", 1) for c in forecast.columns for f in ("linear", "logistic", "pl")
                          if c.startswith(f"{f}_")}
    plain = [c for c in forecast.columns if not c.startswith(("linear_", "logistic_", "pl_"))]
    undocumented = [c for c in [*table.columns, *plain, *forecaster_columns] if f"`{c}`" not in section]
    emergence_ci = {"<f>_emergence_flops_ci_low", "<f>_emergence_flops_ci_high"}  # documented as `_ci_low`/`_ci_high`
    assert set(undocumented) <= emergence_ci


def test_interval_of_published_cells_from_n_or_stderr():
    cells, _ = line(np.exp(-4 * POWER_LAW_CE), POWER_LAW_CE)
    published = cells.drop(columns=["exact_match_ci_low", "exact_match_ci_high", "n"])
    published["exact_match_stderr"] = np.sqrt(published.exact_match * (1 - published.exact_match) / N_ITEMS)
    published[["target_ce_per_token", "target_ce_per_token_ci_low", "target_ce_per_token_ci_high"]] = np.nan
    points = analysis.scale_points(published)
    assert points.exact_match_ci_low.notna().all() and (points.exact_match_ci_low <= points.exact_match).all()
    with_n = analysis.scale_points(cells.drop(columns=["exact_match_ci_low", "exact_match_ci_high"]))
    assert with_n.exact_match_ci_high.iloc[0] == pytest.approx(metrics.clopper_pearson(0, N_ITEMS)[1])
    assert verdict_of(published).verdict_reason == "no continuous metric"
