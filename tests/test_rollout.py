"""Rollouts on a tiny random Llama: the cached path equals re-running every prefix; bookkeeping is exact."""

import pytest
import torch

from budgetlab.models import load_model
from budgetlab.prompts import encode_prompt
from budgetlab.rollout import HFRollout, left_pad
from budgetlab.truncation import cut_point


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny", adapter="none")
    return model.eval(), tok


QUESTIONS = ["Compute 1 + 2", "Compute 17 - 5 + 3 - 8", "Compute 4 + 4 + 4"]


def test_left_pad_puts_padding_on_the_left_and_masks_it():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_cached_summaries_equal_summaries_from_rebuilt_prompts_under_greedy_decoding(tiny):
    model, tok = tiny
    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    budgets = [2, 5, 9]
    fast = HFRollout(model, tok, reuse_cache=True).rollout(prompts, budgets, max_summary=6, do_sample=False)
    slow = HFRollout(model, tok, reuse_cache=False).rollout(prompts, budgets, max_summary=6, do_sample=False)
    for a, b in zip(fast, slow):
        assert a.thinking_ids == b.thinking_ids
        for j in range(len(budgets)):
            assert a.summaries[j][0].ids == b.summaries[j][0].ids, (j, a.summaries[j][0], b.summaries[j][0])
            assert a.summaries[j][0].text == b.summaries[j][0].text


def test_the_largest_budget_alone_gives_the_same_thinking_and_summary_as_every_budget(tiny):
    # RL decodes only the largest budget's summary unless BRPO or RLConfig.all_budgets needs the others
    model, tok = tiny
    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    every = HFRollout(model, tok).rollout(prompts, [2, 5, 9], max_summary=6, do_sample=False)
    last = HFRollout(model, tok).rollout(prompts, [9], max_summary=6, do_sample=False)
    for a, b in zip(every, last):
        assert a.thinking_ids == b.thinking_ids and a.closed == b.closed
        assert a.summaries[-1][0].ids == b.summaries[0][0].ids and len(b.summaries) == 1


def test_every_summary_sits_at_its_cut_point_and_shared_cuts_share_one_object(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    budgets = [3, 6]
    traces = HFRollout(model, tok).rollout(prompts, budgets, n_summaries=2, max_summary=4)
    for t in traces:
        assert len(t.thinking_ids) <= budgets[-1]
        for j, b in enumerate(budgets):
            assert len(t.summaries[j]) == 2
            for s in t.summaries[j]:
                assert (s.kept, s.truncated) == cut_point(t.n_thinking, t.closed, b)
                assert len(s.ids) <= 4
        if cut_point(t.n_thinking, t.closed, 3) == cut_point(t.n_thinking, t.closed, 6):
            assert t.summaries[0] is t.summaries[1]


def test_graded_text_contains_exactly_one_think_end_and_the_cue(tiny):
    model, tok = tiny
    traces = HFRollout(model, tok).rollout([encode_prompt(tok, QUESTIONS[0])], [4], max_summary=3, do_sample=False)
    text = traces[0].summaries[0][0].text
    assert text.count("</think>") == 1 and " Final answer:" in text


def test_bf16_summaries_keep_the_thinking_and_every_cut(tiny):
    # bf16 autocast touches only the summary decode: the thinking pass and the cut bookkeeping are unchanged
    model, tok = tiny
    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    fp32 = HFRollout(model, tok).rollout(prompts, [2, 5, 9], max_summary=4, do_sample=False)
    bf16 = HFRollout(model, tok, summary_bf16=True).rollout(prompts, [2, 5, 9], max_summary=4, do_sample=False)
    for a, b in zip(fp32, bf16):
        assert a.thinking_ids == b.thinking_ids
        assert [(s[0].kept, s[0].truncated) for s in a.summaries] == [(s[0].kept, s[0].truncated) for s in b.summaries]
        assert all(1 <= len(s[0].ids) <= 4 for s in b.summaries)
