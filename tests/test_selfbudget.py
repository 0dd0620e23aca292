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


def _sb_trace(tok, declared: int, answer: str, n_thinking: int):
    """A finished SelfBudgeter trace: the tag span in the prompt, n thinking tokens, a closed graded summary."""
    from budgetlab.traces import Summary, Trace

    tag = tok.encode(f"<budget>{declared}</budget>", add_special_tokens=False)
    text = "1+1=2.</think> Final answer: \\boxed{" + answer + "}"
    return Trace([1] + tag, [5] * n_thinking, True, (1, 1 + len(tag)), [[Summary(n_thinking, False, [2], text)]])


@pytest.mark.parametrize("variant, expected", [
    # group 0: 1 of 2 correct (rate .5 < GATE), group 1: both correct. Allowed maximum 10 for every question;
    # declared 20 overflows, declared 10 with 10 thinking tokens matches exactly (1 + .5); wrong + match = .5
    ("paper", [[-0.5, 0.5], [1.5, 1.5]]),
    ("gated", [[1.0, 0.0], [1.5, 1.5]]),  # group 0 gets plain correctness: the overflow and the match are off
    ("two_sided", [[-0.5, 0.5], [1.5, 1.5]]),  # 10 and 10 are not under half of 10
])
def test_selfbudgeter_reward_variants_by_group(variant, expected):
    from budgetlab.selfbudget import selfbudgeter_rewards

    _, tok = load_model("tiny")
    rows = [{"id": "a", "answer": "2"}, {"id": "b", "answer": "2"}]
    traces = [_sb_trace(tok, 20, "2", 10), _sb_trace(tok, 10, "3", 10), _sb_trace(tok, 10, "2", 10),
              _sb_trace(tok, 10, "2", 10)]
    r, logs = selfbudgeter_rewards(tok, traces, rows, 2, {"a": 10, "b": 10}, alpha=1.0, variant=variant)
    assert r.flatten().tolist() == pytest.approx([x for g in expected for x in g])
    assert logs["sb_reward"] == pytest.approx(sum(map(sum, expected)) / 4)


def test_selfbudgeter_rewards_refuse_an_unknown_variant():
    from budgetlab.selfbudget import selfbudgeter_rewards

    with pytest.raises(ValueError, match="sb_reward='lazy' is not accepted"):
        selfbudgeter_rewards(None, [], [], 2, {}, alpha=1.0, variant="lazy")
