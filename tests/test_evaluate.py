"""Tests for the pure scoring part of budgetlab.evaluate: the anytime score and Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from budgetlab.evaluate import accuracy_ci, anytime_score, declared_tracking, reward_trend


def test_anytime_score_is_the_mean_accuracy_under_a_uniform_prior():
    # (0.25 + 0.5 + 0.75) / 3 = 0.5
    assert anytime_score({16: 0.5, 32: 0.75, 8: 0.25}) == pytest.approx(0.5)
    assert anytime_score({64: 0.3}) == pytest.approx(0.3)


def test_anytime_score_applies_weights_to_budgets_sorted_ascending():
    # budgets 8, 16, 32 -> 0.5·0.25 + 0.25·0.5 + 0.25·0.75 = 0.4375
    assert anytime_score({32: 0.75, 8: 0.25, 16: 0.5}, [0.5, 0.25, 0.25]) == pytest.approx(0.4375)


def test_anytime_score_sorts_json_string_keys_as_numbers():
    # "16" < "128" numerically: 0.25·0.0 + 0.75·1.0 = 0.75 (a text sort would give 0.25)
    assert anytime_score({"128": 1.0, "16": 0.0}, [0.25, 0.75]) == pytest.approx(0.75)


def test_anytime_score_matches_a_naive_weighted_sum_on_random_curves():
    rng = np.random.default_rng(0)
    for _ in range(50):
        budgets = rng.choice(np.arange(1, 200), size=rng.integers(1, 8), replace=False).tolist()
        acc = rng.random(len(budgets)).tolist()
        w = rng.random(len(budgets))
        w = (w / w.sum()).tolist()
        pairs = sorted(zip(budgets, acc))
        expected = sum(wi * a for wi, (_, a) in zip(w, pairs))
        assert anytime_score(dict(zip(budgets, acc)), w) == pytest.approx(expected)
        assert anytime_score(dict(zip(budgets, acc))) == pytest.approx(sum(acc) / len(acc))


@pytest.mark.parametrize("curve, weights, word", [
    ({}, None, "empty"),
    ({8: 0.5, 16: 0.5}, [1.0], "2 budgets"),
    ({8: 0.5, 16: 0.5}, [1.5, -0.5], "non-negative"),
    ({8: 0.5, 16: 0.5}, [0.5, 0.4], "sum to 1"),
    ({8: 1.5}, None, r"within \[0, 1\]"),
    ({8: float("nan")}, None, r"within \[0, 1\]"),
    ({"abc": 0.5}, None, "budget key 'abc'"),
    ({"16": 0.5, 16: 0.5}, None, "strictly increasing"),
    ({0: 0.5}, None, "not positive"),
])
def test_anytime_score_rejects_bad_curves_and_weights(curve, weights, word):
    with pytest.raises(ValueError, match=word):
        anytime_score(curve, weights)


def test_wilson_interval_of_eight_successes_in_ten():
    # p = .8, z = 1.95996, z²/n = .38415: centre = (.8 + .19207)/1.38415 = .71674,
    # half = 1.95996·sqrt(.016 + .0096036)/1.38415 = .22658 -> (.49016, .94332)
    mean, low, high = accuracy_ci(np.array([1] * 8 + [0] * 2))
    assert mean == pytest.approx(0.8)
    assert low == pytest.approx(0.49016, abs=1e-5) and high == pytest.approx(0.94332, abs=1e-5)


def test_wilson_interval_is_not_empty_at_zero_successes():
    # upper = (z²/n) / (1 + z²/n) = .38415 / 1.38415 = .27753
    mean, low, high = accuracy_ci(np.zeros(10, dtype=bool))
    assert (mean, low) == (0.0, 0.0) and high == pytest.approx(0.27753, abs=1e-5)


def test_wilson_interval_matches_scipy_on_random_outcomes():
    rng = np.random.default_rng(1)
    for level in (0.8, 0.95, 0.99):
        for n in (1, 5, 37, 400):
            x = rng.random((n,)) < rng.random()
            ref = binomtest(int(x.sum()), n).proportion_ci(confidence_level=level, method="wilson")
            mean, low, high = accuracy_ci(x.reshape(-1, 1), level)
            assert mean == pytest.approx(x.mean())
            assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)


def test_wilson_interval_narrows_with_more_trials_and_contains_the_mean():
    _, lo_small, hi_small = accuracy_ci(np.array([1, 0] * 5))
    _, lo_big, hi_big = accuracy_ci(np.array([1, 0] * 500))
    assert lo_small < lo_big < 0.5 < hi_big < hi_small
    assert not math.isnan(lo_big)


@pytest.mark.parametrize("x, level, word", [
    (np.array([]), 0.95, "empty"),
    (np.array([0, 2]), 0.95, r"outside \[0, 1\]"),
    (np.array([0.5, np.nan]), 0.95, r"outside \[0, 1\]"),
    (np.array([0, 1]), 1.0, "level=1.0"),
    (np.array([0, 1]), 0.0, "level=0.0"),
])
def test_accuracy_ci_rejects_empty_outcomes_values_outside_zero_one_and_bad_levels(x, level, word):
    with pytest.raises(ValueError, match=word):
        accuracy_ci(x, level)


def test_reward_trend_compares_the_halves_and_fits_a_slope():
    import pandas as pd

    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 3, "step": [1, 2, 3, 4, 1, 2, 3],
                       "reward": [0.0, 0.2, 0.2, 0.6, 0.5, 0.5, 0.5]})
    t = reward_trend(df).set_index("method")
    assert t.loc["a", "first_half"] == pytest.approx(0.1) and t.loc["a", "second_half"] == pytest.approx(0.4)
    assert t.loc["a", "rise"] == pytest.approx(0.3)
    assert t.loc["a", "slope_per_step"] == pytest.approx(np.polyfit([1, 2, 3, 4], [0.0, 0.2, 0.2, 0.6], 1)[0])
    assert t.loc["b", "rise"] == pytest.approx(0.0) and t.loc["b", "slope_per_step"] == pytest.approx(0.0, abs=1e-12)
    assert t.loc["b", "steps"] == 3


def test_declared_tracking_correlates_declared_budgets_with_level_at_the_largest_budget():
    import pandas as pd

    rows = []
    for level, declared, think in [(1, 8, 7), (1, 10, 9), (2, 16, 15), (3, 24, 20), (3, None, 30)]:
        for budget in (16, 64):  # only the largest budget's rows count: one per answer
            rows.append({"level": level, "budget": budget, "declared": declared, "n_thinking": think})
    t = declared_tracking(pd.DataFrame(rows))
    assert t["declared_share"] == pytest.approx(4 / 5)
    assert t["spearman_with_level"] == pytest.approx(0.9486832980505138)  # ranks (1.5,1.5,3,4) vs (1,2,3,4)
    assert t["by_level"][1] == {"declared": 9.0, "n_thinking": 8.0} and set(t["by_level"]) == {1, 2, 3}
