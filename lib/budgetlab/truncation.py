"""Cutting thinking at a budget and building the forced-summary prompt (SPEC §6).

A response is `thinking </think> summary`. Thinking is sampled once up to the largest budget; for each
budget b_j the summary prompt is prompt + thinking + `</think>` + answer cue when the thinking closed
within b_j, else prompt + the first b_j thinking tokens + ` ...</think>` + answer cue (AnytimeReasoner,
"Optimizing Anytime Reasoning via Budget Relative Policy Optimization", section 3). The inserted tokens
are never trained. Token ids are plain lists of ints; the text helpers serve notebooks.
"""

from __future__ import annotations

import bisect
import numbers
import re
from dataclasses import dataclass
from typing import Sequence

from budgetlab.budgets import validate_budgets

THINK_START = "<think>"
THINK_END = "</think>"
CUT_MARKER = " ..."  # inserted before </think> when the thinking is cut mid-way
ANSWER_CUE = " Final answer:"  # inserted after </think>, cut or not
BUDGET_TAG = "<budget>{}</budget>"  # SelfBudgeter's declared thinking budget, before the thinking

_BUDGET_TAG_RE = re.compile(r"\A\s*<budget>\s*(\d{1,12})\s*</budget>")


@dataclass(frozen=True)
class Markers:
    """Token ids of the inserted strings: `</think>`, CUT_MARKER + `</think>`, and ANSWER_CUE.

    Fields are lists (so `ids + markers.cue_ids` works on lists); do not mutate them.
    """

    end_ids: list[int]
    cut_ids: list[int]
    cue_ids: list[int]

    def __post_init__(self) -> None:
        for name in ("end_ids", "cut_ids", "cue_ids"):
            ids = list(getattr(self, name))
            if not ids or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in ids):
                raise ValueError(f"Markers.{name}={ids!r} is not accepted; give a non-empty list of int token ids.")
            object.__setattr__(self, name, [int(t) for t in ids])  # tuples or numpy ints in, plain lists out

    @classmethod
    def from_tokenizer(cls, tok) -> "Markers":
        """Encode the three marker strings with any object that has `encode(text, add_special_tokens=False)`."""
        def enc(text: str) -> list[int]:
            return list(tok.encode(text, add_special_tokens=False))

        return cls(enc(THINK_END), enc(CUT_MARKER + THINK_END), enc(ANSWER_CUE))


def split_thinking(ids: Sequence[int], end_ids: Sequence[int]) -> tuple[list[int], bool]:
    """(tokens before the first occurrence of end_ids, whether it occurred); all of ids when it did not."""
    ids, end = list(ids), list(end_ids)
    if not end:
        raise ValueError("end_ids=[] is empty; give the token ids of '</think>'.")
    m = len(end)
    for i in range(len(ids) - m + 1):
        if ids[i:i + m] == end:
            return ids[:i], True
    return ids, False


def cut_point(n_thinking: int, closed: bool, budget: int) -> tuple[int, bool]:
    """(thinking tokens kept, truncated?) at one budget: (n, False) if closed and n <= budget, else (min(n, budget), True)."""
    if n_thinking < 0:
        raise ValueError(f"n_thinking={n_thinking!r} is negative; give the number of thinking tokens (>= 0).")
    if budget < 1:
        raise ValueError(f"budget={budget!r} is not positive; budgets must be >= 1 token.")
    if closed and n_thinking <= budget:
        return n_thinking, False
    return min(n_thinking, budget), True


def group_budgets_by_cut(n_thinking: int, closed: bool, budgets: Sequence[int]) -> dict[tuple[int, bool], list[int]]:
    """{(kept, truncated): [budget indices]}: budgets with the same cut share one summary prompt (SPEC §6)."""
    groups: dict[tuple[int, bool], list[int]] = {}
    for j, b in enumerate(validate_budgets(budgets)):
        groups.setdefault(cut_point(n_thinking, closed, b), []).append(j)
    return groups


def build_summary_prompt(prompt_ids: Sequence[int], thinking_ids: Sequence[int], closed: bool, budget: int,
                         markers: Markers) -> tuple[list[int], list[bool]]:
    """(ids, inserted): prompt + kept thinking + (cut_ids if truncated else end_ids) + cue_ids, and a mask.

    `thinking_ids` is the whole sampled thinking (without `</think>`); the cut is `cut_point`'s.
    `ids` starts with `prompt_ids` unchanged, so the response part is `ids[len(prompt_ids):]`.
    `inserted[t]` is True exactly on the marker and cue tokens this function added (never trained);
    it is False on prompt and thinking tokens.
    """
    kept, truncated = cut_point(len(thinking_ids), closed, budget)
    tail = (markers.cut_ids if truncated else markers.end_ids) + markers.cue_ids
    ids = list(prompt_ids) + list(thinking_ids[:kept]) + list(tail)
    inserted = [False] * (len(prompt_ids) + kept) + [True] * len(tail)
    return ids, inserted


def segment_of_tokens(n_tokens: int, budgets: Sequence[int]) -> list[int]:
    """seg[t] for thinking positions t = 0..n-1: the 0-based j with b_{j-1} < t+1 <= b_j (b_{-1} = 0)."""
    grid = validate_budgets(budgets)
    if n_tokens < 0:
        raise ValueError(f"n_tokens={n_tokens!r} is negative; give a number of thinking tokens (>= 0).")
    if n_tokens > grid[-1]:
        raise ValueError(f"n_tokens={n_tokens} exceeds the largest budget {grid[-1]}; thinking is cut at b_S.")
    return [bisect.bisect_left(grid, t + 1) for t in range(n_tokens)]


def format_forced_summary_text(prompt: str, thinking: str, truncated: bool) -> str:
    """prompt + thinking + (CUT_MARKER if truncated) + `</think>` + ANSWER_CUE: the text a summary continues.

    `thinking` is already cut to the budget (a notebook helper; the training path works on ids).
    """
    return prompt + thinking + (CUT_MARKER if truncated else "") + THINK_END + ANSWER_CUE


def format_budget_tag(n: int) -> str:
    """`<budget>N</budget>`: SelfBudgeter's declared thinking budget (N >= 0 tokens)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"budget tag value {n!r} is not accepted; give an int >= 0.")
    return BUDGET_TAG.format(int(n))


def parse_budget_tag(text: str) -> int | None:
    """N from a `<budget>N</budget>` at the start of text (leading whitespace allowed), else None; never raises."""
    if not isinstance(text, str):
        return None
    m = _BUDGET_TAG_RE.match(text)
    return int(m.group(1)) if m else None
