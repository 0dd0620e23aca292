"""Tests for budgetlab.truncation: splitting thinking, cut points, forced-summary prompts, budget tags."""

from __future__ import annotations

import random

import pytest

from budgetlab.truncation import (
    ANSWER_CUE,
    BUDGET_TAG,
    CUT_MARKER,
    THINK_END,
    THINK_START,
    Markers,
    build_summary_prompt,
    cut_point,
    format_budget_tag,
    format_forced_summary_text,
    group_budgets_by_cut,
    parse_budget_tag,
    segment_of_tokens,
    split_thinking,
)

# Literal marker ids for the id-level tests: </think> = [9, 8], " ...</think>" = [7, 9, 8], cue = [5].
M = Markers(end_ids=[9, 8], cut_ids=[7, 9, 8], cue_ids=[5])


class CharTokenizer:
    """One id per character (its code point); records the keyword arguments of every encode call."""

    def __init__(self):
        self.calls = []

    def encode(self, text, **kwargs):
        self.calls.append(kwargs)
        return [ord(c) for c in text]


def test_marker_strings_match_the_project_conventions():
    assert (THINK_START, THINK_END, CUT_MARKER, ANSWER_CUE) == ("<think>", "</think>", " ...", " Final answer:")
    assert BUDGET_TAG.format(12) == "<budget>12</budget>"


def test_markers_from_tokenizer_encodes_the_three_strings_without_special_tokens():
    tok = CharTokenizer()
    m = Markers.from_tokenizer(tok)
    assert m.end_ids == [ord(c) for c in "</think>"]
    assert m.cut_ids == [ord(c) for c in " ...</think>"]
    assert m.cue_ids == [ord(c) for c in " Final answer:"]
    assert tok.calls == [{"add_special_tokens": False}] * 3


def test_markers_store_lists_even_when_given_tuples():
    m = Markers((1, 2), (3, 1, 2), (4,))
    assert m.end_ids == [1, 2] and [0] + m.cue_ids == [0, 4]


@pytest.mark.parametrize("field", ["end_ids", "cut_ids", "cue_ids"])
def test_markers_reject_empty_or_non_int_ids(field):
    good = {"end_ids": [1], "cut_ids": [2, 1], "cue_ids": [3]}
    with pytest.raises(ValueError, match=field):
        Markers(**{**good, field: []})
    with pytest.raises(ValueError, match=field):
        Markers(**{**good, field: ["a"]})


def test_split_thinking_stops_before_the_first_end_marker():
    # 1 2 3 | 9 8 | 4 9 8 -> thinking [1, 2, 3], closed
    assert split_thinking([1, 2, 3, 9, 8, 4, 9, 8], [9, 8]) == ([1, 2, 3], True)


def test_split_thinking_keeps_everything_when_the_marker_is_absent_or_partial():
    # a lone 9 at the end is not the whole marker
    assert split_thinking([1, 9, 2, 9], [9, 8]) == ([1, 9, 2, 9], False)
    assert split_thinking([], [9, 8]) == ([], False)
    assert split_thinking([9, 8], [9, 8]) == ([], True)


def test_split_thinking_rejects_an_empty_marker():
    with pytest.raises(ValueError, match="end_ids"):
        split_thinking([1, 2], [])


def test_cut_point_keeps_closed_thinking_that_fits_the_budget():
    assert cut_point(5, True, 8) == (5, False)
    assert cut_point(8, True, 8) == (8, False)  # exactly at the budget still fits


def test_cut_point_truncates_long_or_unclosed_thinking():
    assert cut_point(12, True, 8) == (8, True)  # closed too late
    assert cut_point(12, False, 8) == (8, True)
    assert cut_point(5, False, 8) == (5, True)  # stopped (EOS) without </think>: the marker is still inserted


@pytest.mark.parametrize("args, word", [((-1, True, 8), "n_thinking"), ((3, True, 0), "budget")])
def test_cut_point_rejects_negative_lengths_and_non_positive_budgets(args, word):
    with pytest.raises(ValueError, match=word):
        cut_point(*args)


def test_budgets_after_the_thinking_closed_share_one_cut():
    # thinking of 20 tokens, closed; budgets 8, 16, 24, 32 -> cut at 8, cut at 16, then the whole thinking twice
    assert group_budgets_by_cut(20, True, [8, 16, 24, 32]) == {(8, True): [0], (16, True): [1], (20, False): [2, 3]}
    # unclosed 20 tokens: budgets 24 and 32 both keep all 20 tokens and insert the cut marker
    assert group_budgets_by_cut(20, False, [8, 24, 32]) == {(8, True): [0], (20, True): [1, 2]}


def test_group_budgets_by_cut_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="strictly increasing"):
        group_budgets_by_cut(5, True, [8, 4])


def test_summary_prompt_for_thinking_that_closed_in_time_adds_end_and_cue():
    ids, inserted = build_summary_prompt([100, 101], [1, 2, 3], True, 4, M)
    # prompt 100 101 | thinking 1 2 3 | </think> 9 8 | cue 5
    assert ids == [100, 101, 1, 2, 3, 9, 8, 5]
    assert inserted == [False, False, False, False, False, True, True, True]


def test_summary_prompt_for_cut_thinking_adds_the_cut_marker_and_cue():
    ids, inserted = build_summary_prompt([100], [1, 2, 3, 4, 5], True, 2, M)
    # prompt 100 | first 2 thinking tokens | " ...</think>" 7 9 8 | cue 5
    assert ids == [100, 1, 2, 7, 9, 8, 5]
    assert inserted == [False, False, False, True, True, True, True]
    assert ids[:1] == [100]  # the prompt is kept unchanged, so the response starts at len(prompt_ids)


def test_summary_prompt_is_consistent_with_cut_point_on_random_cases():
    rng = random.Random(0)
    for _ in range(200):
        prompt = [rng.randrange(100, 200) for _ in range(rng.randrange(0, 5))]
        thinking = [rng.randrange(0, 5) for _ in range(rng.randrange(0, 12))]
        closed, budget = rng.random() < 0.5, rng.randrange(1, 15)
        ids, inserted = build_summary_prompt(prompt, thinking, closed, budget, M)
        kept, truncated = cut_point(len(thinking), closed, budget)
        tail = (M.cut_ids if truncated else M.end_ids) + M.cue_ids
        assert ids == prompt + thinking[:kept] + tail
        assert len(inserted) == len(ids) and sum(inserted) == len(tail) and all(inserted[-len(tail):])


def test_segments_follow_the_budget_boundaries():
    # budgets 2, 5: positions t = 0, 1 (t+1 <= 2) -> 0; t = 2, 3, 4 (2 < t+1 <= 5) -> 1
    assert segment_of_tokens(5, [2, 5]) == [0, 0, 1, 1, 1]
    assert segment_of_tokens(3, [2, 5]) == [0, 0, 1]
    assert segment_of_tokens(0, [2, 5]) == []


def test_segments_match_a_naive_loop_on_random_grids():
    rng = random.Random(1)
    for _ in range(100):
        grid = sorted(rng.sample(range(1, 40), rng.randrange(1, 6)))
        n = rng.randrange(0, grid[-1] + 1)
        expected = []
        for t in range(n):
            j = 0
            while not (t + 1 <= grid[j]):
                j += 1
            expected.append(j)
        assert segment_of_tokens(n, grid) == expected


def test_segment_of_tokens_rejects_tokens_beyond_the_largest_budget_and_bad_grids():
    with pytest.raises(ValueError, match="exceeds the largest budget 5"):
        segment_of_tokens(6, [2, 5])
    with pytest.raises(ValueError, match="negative"):
        segment_of_tokens(-1, [2, 5])
    with pytest.raises(ValueError, match="not positive"):
        segment_of_tokens(1, [0, 5])


def test_forced_summary_text_inserts_the_marker_only_when_cut():
    assert format_forced_summary_text("Q<think>", "7+5=12.", False) == "Q<think>7+5=12.</think> Final answer:"
    assert format_forced_summary_text("Q<think>", "7+5", True) == "Q<think>7+5 ...</think> Final answer:"


def test_budget_tag_round_trips():
    assert format_budget_tag(42) == "<budget>42</budget>"
    assert parse_budget_tag(format_budget_tag(42) + "<think>7+5") == 42
    assert parse_budget_tag("  <budget> 7 </budget>") == 7


def test_parse_budget_tag_returns_none_unless_the_tag_starts_the_text():
    for text in ["", "7+5", "x<budget>5</budget>", "<budget>-5</budget>", "<budget>five</budget>",
                 "<budget>5", None, 12, "<budget>" + "9" * 50 + "</budget>"]:
        assert parse_budget_tag(text) is None


@pytest.mark.parametrize("bad", [-1, 2.5, "8", True])
def test_format_budget_tag_rejects_non_integer_or_negative_values(bad):
    with pytest.raises(ValueError, match="budget tag value"):
        format_budget_tag(bad)
