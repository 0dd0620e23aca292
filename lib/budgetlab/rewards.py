"""Rewards built on grading: correctness with format, the TRL adapter, SelfBudgeter and L1 length rewards.

Answer extraction and math-verify grading live in `budgetlab.grading`; `extract_boxed`, `is_correct` and
`is_formatted` are re-exported here, where SPEC §9 names them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from budgetlab import truncation
from budgetlab.config import check_choice
from budgetlab.grading import extract_boxed, grade, graded_text, is_correct, is_formatted  # noqa: F401 (SPEC §9)

# --- format and correctness rewards --------------------------------------------------------------


def correctness_reward_parts(response: str, reference: str, rule: str = "last_boxed") -> dict[str, float]:
    """{correct, format, reward}: reward = 1 only for a formatted and correct response, else 0.

    `rule` picks the answer graded (`grading.ANSWER_RULES`: the last \\boxed{}, or the seeds' first one after
    the answer cue)."""
    formatted, text = float(is_formatted(response)), graded_text(response, rule)
    correct = float(text is not None and is_correct(text, reference))
    return {"correct": correct, "format": formatted, "reward": correct * formatted}


def correctness_reward(response: str, reference: str, rule: str = "last_boxed") -> float:
    """1.0 if the response is formatted and correct under `rule`, else 0.0 (an unformatted one is not graded)."""
    return float(all(grade(response, reference, rule)))


def _completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the last assistant message of a chat-message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"] or messages
        content = assistant[-1].get("content", "") if assistant else ""
        if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    return ""


def trl_correctness_reward(completions: list, answer: list, **kwargs: Any) -> list[float]:
    """TRL GRPOTrainer reward_funcs adapter: 1.0 where is_correct(completion, answer), else 0.0; shape [B]."""
    if len(completions) != len(answer):
        raise ValueError(f"completions has {len(completions)} items but answer has {len(answer)}; they must match.")
    return [float(is_correct(_completion_text(c), a)) for c, a in zip(completions, answer)]


# --- SelfBudgeter ("SelfBudgeter: Adaptive Token Allocation for Efficient LLM Reasoning") -------


def parse_budget_tag(text: str) -> int | None:
    """N from a leading '<budget>N</budget>' when N is a positive integer (a reward needs a real budget), else None."""
    n = truncation.parse_budget_tag(text)
    return n if n is not None and n > 0 else None


def alpha_schedule(step: int, total_steps: int, start: float = 6.0, end: float = 0.1) -> float:
    """Tolerance alpha, linear from start (step 0) to end (step total_steps-1 and after); SelfBudgeter: 6.0 -> 0.1."""
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r} must be a positive integer.")
    if step < 0:
        raise ValueError(f"step={step!r} must be a non-negative integer.")
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return start + (end - start) * progress


def budget_match_score(length: float, declared: float, alpha: float) -> float:
    """0.5*(1+cos(pi*min(|length-N|/(alpha*N), 1))): 1 at length == N, 0 once |length-N| >= alpha*N."""
    gap = min(abs(length - declared) / (alpha * declared), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * gap))


def selfbudgeter_reward_parts(
    response: str,
    reference: str,
    declared: int | None,
    length: int,
    allowed_max: float,
    alpha: float,
    format_penalty: float = -1.0,
    overflow_penalty: float = -0.5,
    length_weight: float = 0.5,
    length_when_wrong: bool = True,
    underflow_share: float | None = None,
    answer_rule: str = "last_boxed",
) -> dict[str, float]:
    """{correct, format, budget_penalty, length, reward}; SelfBudgeter phase-2 reward (SPEC §7).

    Bad format (no positive declared budget -- read from the response's tag when declared is None --
    or not is_formatted) -> format_penalty; declared > allowed_max -> overflow_penalty; otherwise
    correct + length_weight * budget_match_score(length, declared, alpha). `length` in the result is
    that weighted length term, so reward = correct + length on the in-budget branch; `correct` is
    filled on the overflow branch too, for logging (an unformatted response is not graded: 0).
    length_when_wrong=False pays the length term to correct answers only (an ablation: a wrong answer earns
    nothing by matching its declared budget; on the default profile it keeps correctness, not the budgets'
    tracking of difficulty, LOG.md 2026-11-25).
    underflow_share=s makes the budget penalty two-sided: declaring below s * allowed_max also scores
    overflow_penalty (a candidate fix of the drift to the smallest budget; the paper's reward has no such bound).
    `answer_rule` picks the answer graded (`grading.ANSWER_RULES`).
    """
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be positive (the tolerance is alpha * declared budget).")
    if length < 0:
        raise ValueError(f"length={length!r} must be a non-negative token count.")
    if underflow_share is not None and not 0.0 < underflow_share <= 1.0:
        raise ValueError(f"underflow_share={underflow_share!r} must be in (0, 1] (or None: no lower bound).")
    if not allowed_max > 0:
        raise ValueError(f"allowed_max={allowed_max!r} must be positive (math.inf when the warm start was wrong).")
    if declared is None:
        declared = parse_budget_tag(response)
    formatted, correct = grade(response, reference, answer_rule)  # bad format is not graded: it scores the penalty
    correct = float(correct)
    parts = {"correct": correct, "format": 0.0, "budget_penalty": 0.0, "length": 0.0, "reward": format_penalty}
    if declared is None or isinstance(declared, bool) or not declared > 0 or not formatted:
        return parts
    parts["format"] = 1.0
    too_low = underflow_share is not None and math.isfinite(allowed_max) and declared < underflow_share * allowed_max
    if declared > allowed_max or too_low:
        parts.update(budget_penalty=overflow_penalty, reward=overflow_penalty)
        return parts
    if correct or length_when_wrong:
        parts["length"] = length_weight * budget_match_score(length, declared, alpha)
    parts["reward"] = correct + parts["length"]
    return parts


def selfbudgeter_reward(
    response: str, reference: str, declared: int | None, length: int, allowed_max: float, alpha: float, **kwargs: float
) -> float:
    """The reward part of selfbudgeter_reward_parts."""
    return selfbudgeter_reward_parts(response, reference, declared, length, allowed_max, alpha, **kwargs)["reward"]


# --- L1 ("L1: Controlling How Long A Reasoning Model Thinks"): LCPO-Exact and LCPO-Max -------------


def l1_length_reward(correct: bool, length: int, target: int, alpha: float = 0.001) -> float:
    """correct - alpha * |target - length| (L1 / LCPO-Exact)."""
    if alpha < 0:
        raise ValueError(f"alpha={alpha!r} must be non-negative.")
    if length < 0 or target < 0:
        raise ValueError(f"length={length!r} and target={target!r} must be non-negative token counts.")
    return float(bool(correct)) - alpha * abs(target - length)


def l1_max_reward(correct: bool, length: int, target: int, alpha: float, delta: float = 0.5) -> float:
    """correct * clip(alpha * (target - length) + delta, 0, 1) (L1 / LCPO-Max).

    A correct answer at exactly the target earns delta; each token under it earns alpha more (up to 1), each
    token over it alpha less (down to 0, at target + delta / alpha); a wrong answer earns 0 at any length.
    """
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be positive (reward per token under the target).")
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta={delta!r} must be within [0, 1] (the reward of a correct answer at the target).")
    if length < 0 or target < 0:
        raise ValueError(f"length={length!r} and target={target!r} must be non-negative token counts.")
    return float(bool(correct)) * min(max(alpha * (target - length) + delta, 0.0), 1.0)


REWARDS: dict[str, Callable[..., float]] = {
    "correctness": correctness_reward,
    "selfbudgeter": selfbudgeter_reward,
    "l1": l1_length_reward,
    "l1_max": l1_max_reward,
}


def get_reward(name: str) -> Callable[..., float]:
    """The reward function registered under name; ValueError listing the known names otherwise."""
    return REWARDS[check_choice("reward", name, REWARDS)]
