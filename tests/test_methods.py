"""Methods turn traces into training sequences: every token gets exactly the advantage its role calls for."""

from types import SimpleNamespace

import pytest
import torch

from budgetlab.advantages import brpo_advantages, summary_advantages
from budgetlab.methods import Step, brpo, budget_tag, completion_seq, get_method, grpo, ibpo, l1, summary_budgets
from budgetlab.traces import Summary, Trace
from budgetlab.truncation import Markers, cut_point

M = Markers(end_ids=[90, 91], cut_ids=[80, 90, 91], cue_ids=[70])
PROMPT = [1, 2, 3]
BUDGETS = [2, 4]


def make_trace(thinking, closed, summary_ids=((50,), (51,))):
    """A trace whose summaries follow the cut rule; a shared cut shares one Summary object."""
    t = Trace(PROMPT, list(thinking), closed, summaries=[])
    seen = {}
    for j, b in enumerate(BUDGETS):
        key = cut_point(len(thinking), closed, b)
        if key not in seen:
            seen[key] = [Summary(key[0], key[1], list(summary_ids[j]))]
        t.summaries.append(seen[key])
    return t


def cfg(**kw):
    base = dict(method="brpo", prior="uniform", brpo_mode="brpo", decay=0.5, quota=0.5, expensive_threshold=2,
                max_per_prompt=None, pack=False)
    return SimpleNamespace(**{**base, **kw})


def test_completion_seq_trains_thinking_and_summary_but_never_inserted_tokens():
    # thinking [10, 11, 12] cut at 2: prompt(3) + kept(2) + cut marker(3) + cue(1) + summary(1)
    t = make_trace([10, 11, 12], closed=False)
    s = t.summaries[0][0]
    seq = completion_seq(t, s, M, [0.5, -0.5], 2.0)
    assert seq.ids == [1, 2, 3, 10, 11, 80, 90, 91, 70, 50]
    assert seq.mask == [False] * 3 + [True, True] + [False] * 4 + [True]
    assert seq.adv == [0, 0, 0, 0.5, -0.5, 0, 0, 0, 0, 2.0]


def test_a_closed_trace_trains_its_own_think_end_but_not_the_cue():
    t = make_trace([10], closed=True)  # closed after 1 token: both budgets share the cut (1, False)
    seq = completion_seq(t, t.summaries[-1][0], M, 1.5, -1.0)
    assert seq.ids == [1, 2, 3, 10, 90, 91, 70, 50]
    assert seq.mask == [False] * 3 + [True, True, True, False, True]
    assert seq.adv == [0, 0, 0, 1.5, 1.5, 1.5, 0, -1.0]


def test_brpo_gives_each_thinking_token_its_segment_advantage_and_each_summary_its_own():
    # N=1, G=2, S=2, A=1. trace 0 thinks 4 tokens (segments [0,0,1,1]); trace 1 closes after 1 token.
    traces = [make_trace([10, 11, 12, 13], closed=False), make_trace([20], closed=True)]
    rewards = torch.tensor([[[[0.0], [1.0]], [[1.0], [1.0]]]])  # r[n, g, s, a]
    step = Step(traces, rewards, BUDGETS, M, cfg())
    out = brpo(step)
    think = brpo_advantages(rewards.mean(-1), torch.tensor([0.5, 0.5]))
    summ = summary_advantages(rewards)
    # trace 0: two distinct summaries (cut at 2, cut at 4); the one at b_S carries the thinking tokens
    seqs0 = [s for s in out.seqs if s.ids[3] == 10]
    full = [s for s in seqs0 if any(s.mask[3:7])][0]
    thinking_adv = [full.adv[i] for i in range(3, 7)]
    assert thinking_adv == pytest.approx([think[0, 0, 0].item()] * 2 + [think[0, 0, 1].item()] * 2)
    assert full.adv[-1] == pytest.approx(summ[0, 0, 1, 0].item())
    short = [s for s in seqs0 if not any(s.mask[3:7])][0]
    assert sum(short.mask) == 1 and short.adv[-1] == pytest.approx(summ[0, 0, 0, 0].item())
    # trace 1 closed early: its one summary serves both budgets, trained once with the mean advantage
    seqs1 = [s for s in out.seqs if s.ids[3] == 20]
    assert len(seqs1) == 1
    assert seqs1[0].adv[-1] == pytest.approx(summ[0, 1].mean().item())
    assert len(out.seqs) == 3


def test_packed_brpo_holds_the_same_trained_tokens_as_the_separate_sequences():
    traces = [make_trace([10, 11, 12, 13], closed=False), make_trace([20], closed=True)]
    rewards = torch.tensor([[[[0.0], [1.0]], [[1.0], [1.0]]]])
    plain = brpo(Step(traces, rewards, BUDGETS, M, cfg())).seqs
    packed = brpo(Step(traces, rewards, BUDGETS, M, cfg(pack=True))).seqs
    assert len(packed) == 2 and sum(s.n_sequences for s in packed) == len(plain) == 3
    trained = lambda seqs: sorted((i, a) for s in seqs for i, a, m in zip(s.ids, s.adv, s.mask) if m)
    assert trained(packed) == trained(plain)
    # trace 0: trunk = prompt + 4 thinking + cut marker + cue + summary; the budget-2 branch keeps only what
    # follows the 2 thinking tokens it shares with the trunk, at positions 5.. (after prompt + 2 tokens)
    p0 = packed[0]
    assert p0.segment.count(1) == len(M.cut_ids) + len(M.cue_ids) + 1
    assert p0.position[p0.segment.index(1)] == len(PROMPT) + 2


def test_grpo_uses_the_terminal_reward_at_the_largest_budget():
    traces = [make_trace([10, 11, 12, 13], closed=False), make_trace([20], closed=True)]
    rewards = torch.tensor([[[[1.0], [0.0]], [[0.0], [1.0]]]])  # terminal rewards: 0 and 1
    out = grpo(Step(traces, rewards, BUDGETS, M, cfg(method="grpo")))
    # G=2, rewards (0, 1): mean 0.5, Bessel std 0.7071 -> advantages ∓0.5/(0.7071+1e-4)
    a = 0.5 / (2 ** 0.5 / 2 + 1e-4)
    assert out.seqs[0].adv[-1] == pytest.approx(-a, rel=1e-4)
    assert out.seqs[1].adv[-1] == pytest.approx(a, rel=1e-4)
    assert out.loss == "ppo"


def test_ibpo_selects_correct_responses_within_the_expensive_quota_and_fits_them_by_sft():
    # G=4: lengths 1,1,4,4 (threshold 2: the last two are expensive), all correct; quota 0.5 -> 2 cheap + 2 expensive allowed
    traces = [make_trace([10], True), make_trace([11], True), make_trace([1, 2, 3, 4], False), make_trace([5, 6, 7, 8], False)]
    rewards = torch.ones((1, 4, 2, 1))
    out = ibpo(Step(traces, rewards, BUDGETS, M, cfg(method="ibpo", quota=0.25)))
    # quota 0.25 with 2 cheap: at most floor(0.25 * selected) expensive -> 2 cheap + 0 expensive (3 would need 0.33)
    assert out.loss == "sft" and out.logs["selected"] == 2 and out.logs["expensive_share"] == 0.0


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="brpo"):
        get_method("ppo")


def test_l1_rewards_correct_answers_under_their_prompt_target_and_normalises_in_the_group():
    # one prompt with target 4 and α = 1/4 (cfg.l1_alpha None -> 1 / largest budget): both correct, thinking
    # 4 and 1 tokens -> rewards .5 and .5 + 3/4 clipped to 1; GRPO advantages ∓.5/(std .3536 + 1e-4)
    traces = [make_trace([10, 11, 12, 13], closed=False), make_trace([20], closed=True)]
    rewards = torch.ones((1, 2, 2, 1))
    out = l1(Step(traces, rewards, BUDGETS, M, cfg(method="l1", l1_alpha=None), {"targets": [4]}))
    a = 0.25 / (0.5 / 2 ** 0.5 + 1e-4)
    assert out.seqs[0].adv[-1] == pytest.approx(-a, rel=1e-4) and out.seqs[1].adv[-1] == pytest.approx(a, rel=1e-4)
    assert out.logs["l1_reward"] == pytest.approx(0.75) and out.logs["l1_target"] == 4


def test_only_brpo_decodes_a_summary_at_every_budget_unless_all_are_asked_for():
    budgets = [16, 32, 48, 64]
    assert summary_budgets("brpo", budgets) == budgets
    for method in ("grpo", "drgrpo", "ibpo", "selfbudgeter", "l1"):
        assert summary_budgets(method, budgets) == [64]
        assert summary_budgets(method, budgets, all_budgets=True) == budgets


def test_each_method_is_prompted_with_its_own_budget_tag():
    assert budget_tag("selfbudgeter", 64) == "self" and budget_tag("l1", 64) == 64
    assert budget_tag("grpo", 64) is None and budget_tag("brpo", 64) is None
