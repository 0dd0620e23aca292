"""Rollout records: a sampled thinking `Trace` and the forced `Summary` written at each of its cuts.

Token bookkeeping is explicit so training never touches inserted tokens: a `Trace` keeps the prompt,
the sampled thinking, whether the model closed it and its summaries per budget; a `Summary` keeps the
cut it was written at and its own token ids, plus the graded text, decoded once. Both generation
backends (rollout.py, vllm_rollout.py) return them, and methods.py turns them into training sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Summary:
    """A forced summary written after the thinking was cut to `kept` tokens (`truncated`: a marker was inserted)."""

    kept: int
    truncated: bool
    ids: list[int]  # generated summary tokens, EOS included when the model wrote it
    text: str = ""  # the graded response: kept thinking + markers + cue + summary


@dataclass
class Trace:
    """One sampled thinking trace and its summaries, `summaries[budget_index][a]`."""

    prompt_ids: list[int]  # everything before the thinking, never trained except `trained_prefix`
    thinking_ids: list[int]  # sampled thinking tokens, at most the largest budget, without </think>
    closed: bool  # the model wrote </think> within the largest budget
    trained_prefix: tuple[int, int] = (0, 0)  # [start, end) of prompt_ids the model generated (a budget tag)
    summaries: list[list[Summary]] = field(default_factory=list)

    @property
    def n_thinking(self) -> int:
        return len(self.thinking_ids)
