"""Tokenising the canonical formats piece by piece, so SFT targets and RL rollouts share token boundaries.

The prompt, the thinking, `</think>`, the answer cue and the summary are encoded separately and
concatenated: a marker then always has the same ids (`Markers`), wherever it appears.
"""

from __future__ import annotations

from budgetlab.data import format_prompt
from budgetlab.truncation import ANSWER_CUE, BUDGET_TAG, THINK_END, THINK_START


def _enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False) if text else []


def special_prefix(tok) -> list[int]:
    """The ids the tokenizer itself puts before any text: BOS where it adds one (R1-Distill-Qwen), none for SmolLM2."""
    bare, full = _enc(tok, "x"), list(tok.encode("x", add_special_tokens=True))
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            return full[:k]
    return []


def encode_prompt(tok, question: str, think: bool = True, only_think: bool = False) -> list[int]:
    """Ids of the prompt for `question`; `think=False` stops before `<think>` (SelfBudgeter writes its tag there).

    The prompt starts with the tokenizer's own prefix (`special_prefix`): a model trained with a BOS before every
    text sees one here too; `only_think` (the `<think>` after a budget tag) continues a prompt, so has none.
    """
    if only_think:
        return _enc(tok, THINK_START)
    text = format_prompt(question)
    base = text[: -len(THINK_START)] if text.endswith(THINK_START) else text
    return special_prefix(tok) + _enc(tok, base) + (_enc(tok, THINK_START) if think else [])


def summary_text(answer: str) -> str:
    """The summary the model should write after the cue: ` \\boxed{answer}`."""
    return " \\boxed{" + str(answer) + "}"


def encode_target(tok, thinking: str | list[int], answer: str, budget: int | None = None) -> tuple[list[int], list[int]]:
    """(prefix_ids, target_ids) for SFT: target = thinking + </think> + cue + summary + EOS.

    `thinking` is text or already-encoded ids (a model's own thinking). With `budget`, SelfBudgeter's
    `<budget>N</budget><think>` comes first and prefix_ids is empty; otherwise the prompt carries `<think>`.
    """
    think_ids = _enc(tok, thinking) if isinstance(thinking, str) else list(thinking)
    body = think_ids + _enc(tok, THINK_END) + _enc(tok, ANSWER_CUE) + _enc(tok, summary_text(answer))
    body += [tok.eos_token_id]
    if budget is None:
        return [], body
    return [], _enc(tok, BUDGET_TAG.format(int(budget))) + _enc(tok, THINK_START) + body


def sft_example(tok, question: str, thinking: str | list[int], answer: str, budget: int | None = None):
    """A TrainSeq for SFT: prompt tokens untrained, target tokens trained with weight 1."""
    from budgetlab.losses import TrainSeq

    prompt = encode_prompt(tok, question, think=budget is None)
    _, target = encode_target(tok, thinking, answer, budget)
    ids = prompt + target
    return TrainSeq(ids, [0.0] * len(prompt) + [1.0] * len(target), [False] * len(prompt) + [True] * len(target))
