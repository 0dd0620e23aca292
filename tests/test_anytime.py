"""Anytime evaluation of a tiny model and self-consistency voting."""

import math

import pandas as pd
import pytest

from budgetlab.anytime import evaluate_model, majority_vote, self_consistency, self_consistency_votes
from budgetlab.evaluate import curve_table, summarize
from budgetlab.models import load_model
from budgetlab.synthetic import make_synthetic


def test_majority_vote_ignores_missing_answers_and_breaks_ties_by_first_seen():
    assert majority_vote(["3", None, float("nan"), "4", "4"]) == "4"
    assert majority_vote(["5", "6"]) == "5"
    assert majority_vote([None, math.nan, ""]) is None


def test_self_consistency_votes_over_the_first_k_samples_at_the_largest_budget():
    # problem p: samples answer 1, 2, 2 at budget 8 (reference 2); budget 4 rows must be ignored
    df = pd.DataFrame([
        {"id": "p", "sample": s, "budget": b, "answer": a, "n_thinking": 5}
        for s, a in enumerate(["1", "2", "2"]) for b in (4, 8)])
    votes = self_consistency_votes(df, {"p": "2"}, [1, 3])
    assert votes.to_dict("records") == [{"k": 1, "id": "p", "correct": False, "thinking_tokens": 5.0},
                                        {"k": 3, "id": "p", "correct": True, "thinking_tokens": 15.0}]
    sc = self_consistency(votes)
    assert sc.to_dict("records") == [{"k": 1, "accuracy": 0.0, "mean_thinking_tokens": 5.0},
                                     {"k": 3, "accuracy": 1.0, "mean_thinking_tokens": 15.0}]


def test_evaluate_model_grades_every_budget_from_one_thinking_pass():
    model, tok = load_model("tiny")
    rows = make_synthetic(4, levels=(1, 2), seed=0)
    df = evaluate_model(model.eval(), tok, rows, [2, 4], max_summary=3, progress=False, name="tiny")
    assert len(df) == 4 * 2 and set(df["budget"]) == {2, 4}
    assert (df.groupby("id")["n_thinking"].nunique() == 1).all()  # one pass per problem
    summary = summarize(df)["tiny"]
    assert 0.0 <= summary["anytime_score"] <= 1.0 and set(summary["accuracy_by_budget"]) == {2, 4}
    assert set(curve_table(df)["budget"]) == {2, 4}


def test_evaluate_model_refuses_zero_samples():
    with pytest.raises(ValueError, match="samples=0"):
        evaluate_model(None, None, [], [4], samples=0)
