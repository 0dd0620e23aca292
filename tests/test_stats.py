"""Tests for budgetlab.stats: per-problem metrics, paired bootstrap intervals, verdict words, the effects table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from budgetlab.stats import (CLAIMS, VERDICTS, NotEnoughData, effects_table, paired_difference,
                             paired_relative_change, per_problem, spearman_interval, verdict)


def table(model: str, correct: dict, thinking: dict, budgets=(4, 8), levels=None, declared=None) -> pd.DataFrame:
    """Long table like evaluate_model's: correct[id] lists one 0/1 per budget (or per sample, a list of those)."""
    rows = []
    for pid, outcomes in correct.items():
        per_sample = outcomes if isinstance(outcomes[0], list) else [outcomes]
        for s, marks in enumerate(per_sample):
            think = thinking[pid][s] if isinstance(thinking[pid], list) else thinking[pid]
            for b, ok in zip(budgets, marks):
                rows.append({"model": model, "id": pid, "level": (levels or {}).get(pid, 1), "sample": s, "budget": b,
                             "correct": bool(ok), "formatted": True, "n_thinking": think,
                             "declared": (declared or {}).get(pid, float("nan"))})
    return pd.DataFrame(rows)


# ---- per_problem -------------------------------------------------------------------------------------

# two samples of p, one of q; budgets 4, 8
TWO_SAMPLES = table("m", {"p": [[0, 1], [1, 1]], "q": [[0, 0]]}, {"p": [10, 30], "q": 7})


def test_per_problem_anytime_averages_samples_then_the_budget_grid():
    # p: budget 4 -> (0+1)/2 = .5, budget 8 -> 1 -> anytime .75; q: 0
    s = per_problem(TWO_SAMPLES, "m", "anytime")
    assert s.to_dict() == {"p": 0.75, "q": 0.0} and s.name == "anytime"


def test_per_problem_accuracy_at_a_budget_and_at_the_largest_budget():
    # budget 4: p (0+1)/2 = .5, q 0; budget 8: p 1, q 0
    assert per_problem(TWO_SAMPLES, "m", "accuracy@4").to_dict() == {"p": 0.5, "q": 0.0}
    top = per_problem(TWO_SAMPLES, "m", "accuracy@max")
    assert top.to_dict() == {"p": 1.0, "q": 0.0} and top.name == "accuracy@8"


def test_per_problem_thinking_tokens_counts_each_trace_once_not_once_per_budget():
    # p: traces of 10 and 30 tokens -> 20 (each repeated on 2 budget rows, which must not matter); q: 7
    assert per_problem(TWO_SAMPLES, "m", "thinking_tokens").to_dict() == {"p": 20.0, "q": 7.0}


def test_per_problem_style_share_is_the_mean_over_traces():
    df = TWO_SAMPLES.assign(style_short=[1, 1, 0, 0, 1, 1])  # p: sample 0 short, sample 1 not -> .5; q: 1
    assert per_problem(df, "m", "style_share").to_dict() == {"p": 0.5, "q": 1.0}


@pytest.mark.parametrize("model, metric, word", [
    ("m", "accuracy", "metric='accuracy' is not known.*thinking_tokens"),
    ("m", "entropy", "metric='entropy' is not known"),
    ("m", "accuracy@16", r"budget '16' is not on the evaluation grid \[4, 8\]"),
    ("m", "accuracy@big", "budget 'big'"),
    ("m", "style_share", "no 'style_short' column"),
    ("brpo", "anytime", r"model='brpo' has no rows; models present: \['m'\]"),
])
def test_per_problem_rejects_unknown_metrics_budgets_columns_and_models(model, metric, word):
    with pytest.raises(ValueError, match=word):
        per_problem(TWO_SAMPLES, model, metric)


# ---- paired_difference and friends ---------------------------------------------------------------------


def test_paired_difference_uses_only_common_problems():
    a = pd.Series({"p": 0.5, "q": 1.0, "r": 0.0, "only_a": 1.0})
    b = pd.Series({"r": 0.5, "q": 0.5, "p": 0.0, "only_b": 0.0})
    out = paired_difference(a, b)
    # differences p .5, q .5, r -.5 -> mean 1/6; only_a and only_b are left out
    assert out["difference"] == pytest.approx(1 / 6) and out["n"] == 3
    assert out["low"] <= out["difference"] <= out["high"]


def test_paired_interval_contains_the_estimate_and_shrinks_with_more_problems():
    d = [0.5, 0.0, 0.25, 1.0, -0.25]  # mean .3
    small = paired_difference(pd.Series(d), pd.Series([0.0] * 5))
    big = paired_difference(pd.Series(d * 20), pd.Series([0.0] * 100))
    assert small["difference"] == pytest.approx(0.3) and big["difference"] == pytest.approx(0.3)
    assert small["low"] < big["low"] < 0.3 < big["high"] < small["high"]


def test_paired_difference_is_deterministic_given_the_seed():
    # 8 uneven values: resample means are fine-grained enough that another seed moves a bound
    a = pd.Series([0.13, 0.91, 0.42, 0.77, 0.35, 0.06, 0.58, 0.29])
    b = pd.Series([0.2, 0.5, 0.5, 0.1, 0.0, 0.33, 0.41, 0.07])
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)
    assert paired_difference(a, b, seed=3) != paired_difference(a, b, seed=4)


def test_identical_differences_give_the_point_interval():
    # every problem moves by exactly .25: all resamples agree, the interval is [.25, .25] (BCa would be NaN)
    out = paired_difference(pd.Series([0.75, 0.5, 1.0]), pd.Series([0.5, 0.25, 0.75]))
    assert out == {"difference": 0.25, "low": 0.25, "high": 0.25, "n": 3}


def test_pairing_removes_the_spread_between_problems():
    # b spreads over [0, .9]; a = b + .1 on every problem: resampling problems keeps each pair together, so the
    # interval is the point .1 however far apart the problems are
    b = pd.Series([0.0, 0.9, 0.2, 0.7, 0.4, 0.5, 0.1, 0.8])
    paired = paired_difference(b + 0.1, b)
    assert paired["high"] - paired["low"] < 1e-9 and paired["difference"] == pytest.approx(0.1) and paired["n"] == 8


def test_relative_change_is_a_ratio_of_means():
    # (40 + 60) / (100 + 100) - 1 = -.5; a per-problem mean of ratios would give the same here, (-.6 - .4)/2
    out = paired_relative_change(pd.Series([40.0, 60.0, 50.0]), pd.Series([100.0, 100.0, 100.0]))
    assert out["difference"] == pytest.approx(-0.5) and out["n"] == 3
    # resample means of a lie in [40, 60] -> the interval within [-.6, -.4]
    assert -0.6 <= out["low"] <= -0.5 <= out["high"] <= -0.4


def test_spearman_interval_matches_scipy_and_stays_inside_minus_one_one():
    rng = np.random.default_rng(0)
    level = rng.integers(1, 4, size=30)  # ties on purpose: average ranks
    declared = level * 10 + rng.integers(0, 15, size=30)
    out = spearman_interval(level, declared, n_resamples=999)
    assert out["rho"] == pytest.approx(spearmanr(level, declared).statistic) and out["n"] == 30
    assert -1 <= out["low"] <= out["rho"] <= out["high"] <= 1


def test_spearman_interval_counts_constant_resamples_as_no_tracking():
    # x = (1, 1, 1, 2): about (3/4)^4 = 32% of resamples hold only 1s -> rho 0.0 there, so low = 0, not NaN
    out = spearman_interval([1, 1, 1, 2], [5, 5, 5, 9], n_resamples=999)
    assert out["rho"] == pytest.approx(1.0) and out["low"] == 0.0 and out["high"] == pytest.approx(1.0)


@pytest.mark.parametrize("call, error, word", [
    (lambda: paired_difference(pd.Series({"p": 1.0}), pd.Series({"p": 0.0, "q": 1.0})), NotEnoughData,
     "share 1 problem id"),
    (lambda: paired_difference(pd.Series({"p": 1.0}), pd.Series({"q": 1.0})), NotEnoughData, "share 0"),
    (lambda: paired_difference(pd.Series([1.0, np.inf, 2.0]), pd.Series([0.0, 0.0, 1.0])), ValueError, "NaN or inf"),
    # NaN means "no value for this problem" (an answer with no step has no style): dropped, leaving 1 shared id
    (lambda: paired_difference(pd.Series([1.0, np.nan]), pd.Series([0.0, 0.0])), NotEnoughData, "share 1"),
    (lambda: paired_difference(pd.Series([1.0, 0.0]), pd.Series([0.0, 0.0]), level=1.0), ValueError, "level=1.0"),
    (lambda: paired_difference(pd.Series([1.0, 0.0]), pd.Series([0.0, 0.0]), level=95), ValueError, "level=95"),
    (lambda: paired_relative_change(pd.Series([1.0, 2.0]), pd.Series([0.0, 0.0])), ValueError, "positive baseline"),
    (lambda: spearman_interval([1, 2, 3], [4, 5]), NotEnoughData, "y has 2 value"),
    (lambda: spearman_interval([1, 2, 3, 4], [4, 5, 6]), ValueError, "x has 4 values and y 3"),
    (lambda: spearman_interval([1, 2, 3], [7, 7, 7]), NotEnoughData, "constant"),
])
def test_intervals_refuse_too_few_problems_nan_values_and_bad_levels(call, error, word):
    with pytest.raises(error, match=word):
        call()


def test_too_few_problems_is_a_value_error_too():
    assert issubclass(NotEnoughData, ValueError)


# ---- verdict ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("low, high, threshold, direction, word", [
    (-0.1, 0.2, 0.0, ">", "inconclusive"),        # straddles 0
    (0.1, 0.3, 0.0, ">", "reproduced"),           # entirely above
    (-0.3, -0.1, 0.0, ">", "not reproduced"),     # entirely below
    (0.0, 0.3, 0.0, ">", "inconclusive"),         # touches from above: 0 itself is not > 0
    (0.0, 0.3, 0.0, ">=", "reproduced"),          # ... but it is >= 0
    (-0.3, 0.0, 0.0, ">", "not reproduced"),      # touches from below: nothing in it is > 0
    (-0.3, 0.0, 0.0, ">=", "inconclusive"),       # ... but 0 is >= 0
    (0.0, 0.0, 0.0, ">", "not reproduced"),       # a point interval at the threshold
    (0.0, 0.0, 0.0, ">=", "reproduced"),
    (-0.02, 0.01, -0.03, ">=", "reproduced"),     # "loses at most 3 points": drop of 2 at worst
    (-0.05, 0.01, -0.03, ">=", "inconclusive"),
    (-0.6, -0.45, -0.4, "<", "reproduced"),       # "at least 40% shorter" on the relative change
    (-0.3, -0.1, -0.4, "<", "not reproduced"),
    (-0.5, -0.3, -0.4, "<", "inconclusive"),
    (-0.6, -0.4, -0.4, "<", "inconclusive"),      # touches: -0.4 is not < -0.4
    (-0.6, -0.4, -0.4, "<=", "reproduced"),
    (-0.4, -0.1, -0.4, "<", "not reproduced"),
    (-0.4, -0.1, -0.4, "<=", "inconclusive"),
    (float("nan"), 0.3, 0.0, ">", "inconclusive"),
    (0.1, float("nan"), 0.0, ">", "inconclusive"),
    (-math.inf, math.inf, 0.0, ">", "inconclusive"),
])
def test_verdict_words(low, high, threshold, direction, word):
    assert verdict(low, high, threshold, direction) == word


@pytest.mark.parametrize("args, word", [
    ((0.0, 1.0, 0.0, "=>"), r"direction='=>' is not known; use one of \['>', '>=', '<', '<='\]"),
    ((0.5, 0.1, 0.0, ">"), "low=0.5 is above high=0.1"),
    ((0.0, 1.0, float("nan"), ">"), "threshold=nan"),
])
def test_verdict_rejects_unknown_directions_reversed_intervals_and_nan_thresholds(args, word):
    with pytest.raises(ValueError, match=word):
        verdict(*args)


# ---- effects_table ---------------------------------------------------------------------------------------

IDS = ("p1", "p2", "p3", "p4")
GRPO = table("grpo", dict(zip(IDS, [[0, 1], [0, 0], [1, 1], [0, 1]])), dict.fromkeys(IDS, 20))
BRPO = table("brpo", dict(zip(IDS, [[1, 1], [0, 1], [1, 1], [1, 1]])), dict.fromkeys(IDS, 20))
WARM = table("warmstart", dict(zip(IDS, [[1, 1]] * 4)), dict.fromkeys(IDS, 100))
SELF = table("selfbudgeter", dict(zip(IDS, [[0, 0], [0, 0], [1, 1], [0, 0]])), dict(zip(IDS, [40, 50, 60, 50])),
             levels=dict(zip(IDS, [1, 1, 2, 3])), declared=dict(zip(IDS, [10, 20, 30, 40])))
IBPO = table("ibpo", dict(zip(IDS, [[1, 1], [1, 1], [1, 1], [0, 0]])), dict.fromkeys(IDS, 30))
# per-problem votes (anytime.self_consistency_votes): k=1 costs 25 and is right on p1, p3; k=2 costs 50, all right
SC = pd.DataFrame([{"k": k, "id": i, "correct": ok, "thinking_tokens": 25.0 * k}
                   for k, outcome in ((1, [1, 0, 1, 0]), (2, [1, 1, 1, 1])) for i, ok in zip(IDS, outcome)])


def test_effects_table_brpo_row_is_the_paired_anytime_difference():
    rows = effects_table(pd.concat([GRPO, BRPO]))
    assert [r["claim"] for r in rows] == ["BRPO's anytime score exceeds GRPO's"]
    r = rows[0]
    # anytime per problem: brpo 1, .5, 1, 1; grpo .5, 0, 1, .5 -> differences .5, .5, 0, .5, mean .375.
    # A resample's mean is .5·(4 − zeros)/4 with zeros ~ Bin(4, 1/4); P(4 zeros) = .004 < .025 -> low >= .125
    assert r["difference"] == pytest.approx(0.375) and r["low"] > 0 and r["verdict"] == "reproduced"
    assert (r["paper"], r["metric"], r["a"], r["b"], r["threshold"], r["direction"], r["n"]) == (
        "AnytimeReasoner", "anytime", "brpo", "grpo", 0.0, ">", 4)


def test_effects_table_selfbudgeter_rows_against_the_warm_start():
    rows = {r["claim"]: r for r in effects_table(pd.concat([WARM, SELF]))}
    assert set(rows) == {c.claim for c in CLAIMS if c.paper == "SelfBudgeter"}
    think = rows["SelfBudgeter thinks at least 40% less than the warm start"]
    # (40 + 50 + 60 + 50) / 400 - 1 = -.5; resample means of selfbudgeter stay in [40, 60], all 60 has p = 1/256
    assert think["difference"] == pytest.approx(-0.5) and think["high"] < -0.4 and think["verdict"] == "reproduced"
    drop = rows["SelfBudgeter loses at most 3 points of accuracy at the largest budget"]
    # budget 8: warm start 1, 1, 1, 1; selfbudgeter 0, 0, 1, 0 -> differences -1, -1, 0, -1, mean -.75
    assert drop["difference"] == pytest.approx(-0.75) and drop["metric"] == "accuracy@8"
    assert drop["verdict"] == "not reproduced"
    rho = rows["SelfBudgeter's declared budgets track difficulty (Spearman >= 0.5)"]
    # levels (1, 1, 2, 3) vs declared (10, 20, 30, 40): ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4) -> .94868
    assert rho["difference"] == pytest.approx(0.9486832980505138) and rho["n"] == 4
    assert rho["low"] <= rho["difference"] <= rho["high"] and rho["verdict"] in VERDICTS


def test_effects_table_pairs_ibpo_with_the_self_consistency_k_of_nearest_cost():
    (r,) = effects_table(IBPO, SC)
    # IBPO thinks 30 tokens: nearest k=1 (25); IBPO right on p1..p3 vs votes 1, 0, 1, 0 -> diffs 0, 1, 0, 0, mean .25
    assert r["difference"] == pytest.approx(0.25) and "k=1" in r["note"] and r["low"] <= 0.25 <= r["high"]
    assert (r["a"], r["b"], r["direction"], r["n"]) == ("ibpo", "self-consistency", ">=", 4)
    assert effects_table(IBPO) == [] and effects_table(IBPO, SC.iloc[:0]) == []


def test_effects_table_lists_only_claims_whose_models_are_present():
    everything = pd.concat([GRPO, BRPO, WARM, SELF, IBPO])
    assert [r["claim"] for r in effects_table(everything, SC)] == [c.claim for c in CLAIMS]
    assert len(effects_table(everything)) == len(CLAIMS) - 1  # no self-consistency table: no IBPO row
    assert effects_table(GRPO) == [] and effects_table(pd.concat([BRPO, WARM])) == []


def test_effects_table_is_deterministic_given_the_seed():
    df = pd.concat([GRPO, BRPO, WARM, SELF])
    assert effects_table(df, seed=1) == effects_table(df, seed=1)


def test_effects_table_gives_a_tiny_run_an_inconclusive_row_instead_of_failing():
    one = pd.concat([GRPO[GRPO["id"] == "p1"], BRPO[BRPO["id"] == "p1"]])
    (r,) = effects_table(one)
    assert r["verdict"] == "inconclusive" and math.isnan(r["low"]) and "share 1 problem id" in r["note"]


def test_effects_table_refuses_per_k_self_consistency_accuracies_without_per_problem_votes():
    per_k = pd.DataFrame({"k": [1, 2], "accuracy": [0.5, 1.0], "mean_thinking_tokens": [25.0, 50.0]})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['correct', 'id', 'thinking_tokens'\]"):
        effects_table(IBPO, per_k)


def test_problems_without_a_value_in_either_model_are_left_out_of_a_paired_difference():
    # ids p, q, r, s; a has no value on q, b none on s -> pairs on p and r only: diffs 1 - 0 and 3 - 1, mean 1.5
    a = pd.Series({"p": 1.0, "q": np.nan, "r": 3.0, "s": 2.0})
    b = pd.Series({"p": 0.0, "q": 5.0, "r": 1.0, "s": np.nan})
    out = paired_difference(a, b, n_resamples=999)
    assert out["n"] == 2 and out["difference"] == pytest.approx(1.5)
