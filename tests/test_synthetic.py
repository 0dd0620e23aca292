"""Tests for budgetlab.synthetic: the synthetic graded task."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from budgetlab.synthetic import make_synthetic


def _evaluate(question: str) -> int:
    """Left-to-right + / - evaluation written independently of the generator."""
    tokens = question.removeprefix("Compute ").split()
    total = int(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        total = total + int(operand) if op == "+" else total - int(operand)
    return total


# --- synthetic task -----------------------------------------------------------------------

def test_make_synthetic_is_deterministic_by_seed():
    assert make_synthetic(60, seed=3) == make_synthetic(60, seed=3)
    assert make_synthetic(60, seed=3) != make_synthetic(60, seed=4)


def test_make_synthetic_balances_levels_within_one():
    counts = Counter(r["level"] for r in make_synthetic(63, seed=0))
    # 63 = 6 * 10 + 3: three levels get 11, three get 10
    assert sorted(counts) == [1, 2, 3, 4, 5, 6]
    assert sorted(counts.values()) == [10, 10, 10, 11, 11, 11]


def test_make_synthetic_answers_equal_the_independently_evaluated_expression():
    for row in make_synthetic(300, seed=1):
        assert row["answer"] == str(_evaluate(row["question"]))


def test_make_synthetic_solution_has_one_step_per_level_chained_on_the_previous_result():
    for row in make_synthetic(120, seed=2):
        steps = re.findall(r"(\d+)([+-])(\d+)=(\d+)\.", row["solution"])
        assert len(steps) == row["level"] == (len(row["question"].split()) - 2) // 2
        for (a, op, b, c), nxt in zip(steps, steps[1:] + [(row["answer"],)]):
            assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
            assert nxt[0] == c  # the next step starts from this result


def test_make_synthetic_keeps_partial_results_small_and_non_negative():
    for row in make_synthetic(200, seed=5):
        results = [int(c) for c in re.findall(r"=(\d+)\.", row["solution"])]
        assert all(0 <= v <= 50 for v in results)


def test_make_synthetic_honours_requested_levels_and_distinct_questions():
    rows = make_synthetic(40, levels=(2, 5), seed=0)
    assert {r["level"] for r in rows} == {2, 5}
    assert len({r["question"] for r in rows}) == 40


def test_make_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n=0"):
        make_synthetic(0)
    with pytest.raises(ValueError, match="levels="):
        make_synthetic(10, levels=(0, 1))
    with pytest.raises(ValueError, match="levels="):
        make_synthetic(10, levels=())


def test_make_synthetic_refuses_more_distinct_problems_than_exist():
    # with operands 1..2 and results <= 2, level 1 has few distinct questions (1+1, 2-1, ...)
    with pytest.raises(ValueError, match="distinct level-1"):
        make_synthetic(50, levels=(1,), max_operand=2, max_result=2)


# ---- the known-answer testbed ----------------------------------------------------------------------

from budgetlab.synthetic import make_testbed, render_steps, short_style_share, numbered_question  # noqa: E402


def test_testbed_steps_stay_single_digit_and_both_styles_reach_the_same_answer():
    rows = make_testbed(200, seed=3)
    for r in rows:
        values = [int(v) for v in re.findall(r"\d+", r["question"] + " " + r["solution"])]
        assert all(0 <= v <= 9 for v in values), r
        assert r["solution"].count("=") == r["level"] and r["solution"].endswith(f"={r['answer']}." if r["style"] == "short"
                                                                                   else f"so we have {r['answer']}.")
    assert {r["style"] for r in rows} == {"short", "long"} and {r["source"] for r in rows} == {"testbed"}
    assert rows == make_testbed(200, seed=3)  # deterministic by seed


def test_testbed_long_share_sets_the_style_mix_and_leaves_the_problems_alone():
    short, long = make_testbed(60, seed=1, long_share=0.0), make_testbed(60, seed=1, long_share=1.0)
    assert {r["style"] for r in short} == {"short"} and {r["style"] for r in long} == {"long"}
    assert [r["question"] for r in short] == [r["question"] for r in long]
    # the same steps: dropping the restatements from the long text gives the short one
    assert [re.sub(r", so we have \d+", "", r["solution"]) for r in long] == [r["solution"] for r in short]
    with pytest.raises(ValueError, match="long_share=1.5 is not accepted"):
        make_testbed(10, long_share=1.5)


def test_render_steps_writes_each_style_and_refuses_an_unknown_one():
    steps = [(3, "+", 4, 7), (7, "-", 2, 5)]
    assert render_steps(steps) == render_steps(steps, "chain") == "3+4=7. 7-2=5."  # the chain's plain steps
    assert render_steps(steps, "short") == "(1) 3+4=7. (2) 7-2=5."
    assert render_steps(steps, "long") == "(1) 3+4=7, so we have 7. (2) 7-2=5, so we have 5."
    assert numbered_question(steps) == "Start at 3, then (1) +4 (2) -2."
    with pytest.raises(ValueError, match="style='terse' is not accepted"):
        render_steps(steps, "terse")


def test_short_style_share_counts_steps_of_any_text():
    assert short_style_share("3+4=7. 7-2=5.") == 1.0 and short_style_share("(1) 3+4=7. (2) 7-2=5.") == 1.0
    assert short_style_share("3+4=7, so we have 7. 7-2=5.") == 0.5  # one of two steps restated
    assert short_style_share("3 + 4 = 7, so we have 7.") == 0.0  # spaces around the signs still count
    assert short_style_share("I think the answer is 7") is None and short_style_share("") is None


from budgetlab.synthetic import fresh_problems  # noqa: E402


def test_fresh_problems_leave_out_every_seen_question_and_fill_each_level():
    seen = {r["question"] for r in make_testbed(120, levels=(2, 3), seed=0)}
    rows = fresh_problems("testbed", seen, 25, [2, 3], seed=7)
    assert Counter(r["level"] for r in rows) == {2: 25, 3: 25}
    assert not seen & {r["question"] for r in rows} and len({r["question"] for r in rows}) == 50
    assert len({r["id"] for r in rows}) == 50  # each level is made apart, yet every id is its own
    assert rows == fresh_problems("testbed", seen, 25, [2, 3], seed=7)  # deterministic by seed


def test_fresh_problems_give_a_nearly_used_up_level_what_it_has_left():
    # the testbed's level 1 has 81 distinct problems: with 80 of them seen, one is left
    everything = [r["question"] for r in fresh_problems("testbed", set(), 500, [1])]
    assert len(everything) == 81
    rows = fresh_problems("testbed", set(everything[:80]), 10, [1])
    assert [r["question"] for r in rows] == everything[80:]


def test_fresh_problems_refuse_a_task_that_is_not_generated_and_a_bad_count():
    with pytest.raises(ValueError, match="'gsm8k' is not a generated task"):
        fresh_problems("gsm8k", set(), 5, [1])
    with pytest.raises(ValueError, match="per_level=0"):
        fresh_problems("testbed", set(), 0, [1])
