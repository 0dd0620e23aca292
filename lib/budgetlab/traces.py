"""Rollout records: a sampled thinking `Trace` and the forced `Summary` written at each of its cuts.

Token bookkeeping is explicit so training never touches inserted tokens: a `Trace` keeps the prompt,
the sampled thinking, whether the model closed it and its summaries per budget; a `Summary` keeps the
cut it was written at and its own token ids, plus the graded text, decoded once. Both generation
backends (rollout.py, vllm_rollout.py) build them with the helpers below (EOS, where thinking ends, the
graded text), so both read raw generations the same way; methods.py turns them into training sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from budgetlab.truncation import THINK_END, Markers, split_thinking


@dataclass
class Summary:
    """A forced summary written after the thinking was cut to `kept` tokens (`truncated`: a marker was inserted)."""

    kept: int
    truncated: bool
    ids: list[int]  # generated summary tokens, EOS included when the model wrote it
    text: str = ""  # the graded response: kept thinking + markers + cue + summary
    # [markers + cue + ids, hidden]: the rollout's states after the frozen layers (HFRollout's record_depth), or None
    states: torch.Tensor | None = field(default=None, compare=False, repr=False)


@dataclass
class Trace:
    """One sampled thinking trace and its summaries, `summaries[budget_index][a]`."""

    prompt_ids: list[int]  # everything before the thinking, never trained except `trained_prefix`
    thinking_ids: list[int]  # sampled thinking tokens, at most the largest budget, without </think>
    closed: bool  # the model wrote </think> within the largest budget
    trained_prefix: tuple[int, int] = (0, 0)  # [start, end) of prompt_ids the model generated (a budget tag)
    summaries: list[list[Summary]] = field(default_factory=list)
    # [prompt + thinking, hidden]: the rollout's states after the frozen layers (HFRollout's record_depth), or None
    states: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def n_thinking(self) -> int:
        return len(self.thinking_ids)


def fill_text(traces: list[Trace], tok, markers: Markers) -> None:
    """Decode each distinct summary once into the text the rewards grade: kept thinking + markers + cue + summary."""
    for t in traces:
        for per_budget in t.summaries:
            for s in per_budget:
                if not s.text:
                    inserted = (markers.cut_ids if s.truncated else markers.end_ids) + markers.cue_ids
                    s.text = tok.decode(t.thinking_ids[: s.kept] + inserted + s.ids, skip_special_tokens=True)


def until_eos(ids: Sequence[int], eos_id: int | None, keep_eos: bool) -> list[int]:
    """The generated ids up to the first EOS (kept or dropped); the rest is padding."""
    ids = list(ids)
    if eos_id is not None and eos_id in ids:
        k = ids.index(eos_id)
        return ids[: k + 1] if keep_eos else ids[:k]
    return ids


def find_thinking_end(ids: list[int], markers: Markers, tokenizer) -> tuple[list[int], bool]:
    """Split generated ids at </think>; falls back to text search when BPE merged the marker with a neighbour."""
    thinking, closed = split_thinking(ids, markers.end_ids)
    if closed or tokenizer is None:
        return thinking, closed
    text = tokenizer.decode(ids)
    pos = text.find(THINK_END)
    if pos < 0:
        return thinking, False
    k = 0
    while k < len(ids) and len(tokenizer.decode(ids[: k + 1])) <= pos:
        k += 1
    return ids[:k], True
