"""SelfBudgeter phase 1: labels are the shortest correct own answer; training examples carry that budget tag."""

import math

import pytest

from budgetlab.models import load_model
from budgetlab.selfbudget import allowed_lengths, budget_labels, budget_sft_examples, pick_label
from budgetlab.synthetic import make_synthetic
from budgetlab.truncation import parse_budget_tag


def test_pick_label_takes_the_shortest_correct_answer_and_none_when_all_are_wrong():
    assert pick_label([30, 12, 20, 12], [True, False, True, True]) == 3  # index 1 is shorter but wrong
    assert pick_label([30, 12], [True, False]) == 0
    assert pick_label([5, 6], [False, False]) is None


def test_labels_from_k_samples_give_one_row_per_question_and_inf_when_never_correct():
    model, tok = load_model("tiny", adapter="lora", lora_r=4)
    rows = make_synthetic(3, seed=0)
    labels = budget_labels(model, tok, rows, max_thinking=4, max_summary=3, samples=2)
    assert [lab["id"] for lab in labels] == [r["id"] for r in rows]
    for lab in labels:  # a random model never answers correctly
        assert lab["correct"] is False and math.isinf(lab["length"]) and lab["pass_rate"] == 0.0
    with pytest.raises(ValueError, match="samples=0"):
        budget_labels(model, tok, rows, 4, samples=0)
    assert budget_labels(None, None, [], max_thinking=4) == []  # SB_PROBLEMS = 0: no model work at all


def test_budget_sft_examples_prefix_the_label_as_a_budget_tag():
    _, tok = load_model("tiny", adapter="none")
    rows = make_synthetic(2, seed=0)
    thinking = tok.encode("1+2=3.", add_special_tokens=False)
    labels = [{"id": rows[0]["id"], "correct": True, "length": len(thinking), "thinking_ids": thinking},
              {"id": rows[1]["id"], "correct": False, "length": math.inf, "thinking_ids": []}]
    (ex,) = budget_sft_examples(tok, rows, labels)
    trained = tok.decode([i for i, m in zip(ex.ids, ex.mask) if m])
    assert parse_budget_tag(trained) == len(thinking) and trained.count("<think>") == 1


def test_allowed_lengths_read_back_from_jsonl_give_infinity_for_never_correct():
    labels = [{"id": "a", "length": 8}, {"id": "b", "length": None}]  # as 02 reads them from 01's JSONL
    assert allowed_lengths(labels) == {"a": 8, "b": math.inf}
