"""Tokenising the canonical formats piece by piece, so SFT targets and RL rollouts share token boundaries.

The prompt, the thinking, `</think>`, the answer cue and the summary are encoded separately and
concatenated: a marker then always has the same ids (`Markers`), wherever it appears.
"""

from __future__ import annotations

from budgetlab.config import check_choice
from budgetlab.data import format_prompt
from budgetlab.truncation import ANSWER_CUE, BUDGET_TAG, THINK_END, THINK_START

# "plain": the project's short prompt (data.format_prompt); "chat": the tokenizer's own chat template around the
# question and the seeds' instruction, as a reasoning model was trained to read it (the paper profile).
PROMPT_STYLES = ("plain", "chat")
CHAT_INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."  # DeepScaleR's


def _enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False) if text else []


def special_prefix(tok) -> list[int]:
    """The ids the tokenizer itself puts before any text: BOS where it adds one (R1-Distill-Qwen), none for SmolLM2."""
    bare, full = _enc(tok, "x"), list(tok.encode("x", add_special_tokens=True))
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            return full[:k]
    return []


def encode_prompt(tok, question: str, think: bool = True, only_think: bool = False, style: str = "plain") -> list[int]:
    """Ids of the prompt for `question`; `think=False` stops before `<think>` (SelfBudgeter writes its tag there).

    `style` (PROMPT_STYLES): "plain" starts with the tokenizer's own prefix (`special_prefix`: a model trained
    with a BOS before every text sees one here too); "chat" is the tokenizer's chat template for one user turn,
    the question and CHAT_INSTRUCTION, with the generation prompt. `only_think` (the `<think>` after a budget
    tag) continues a prompt, so has neither.
    """
    check_choice("prompt style", style, PROMPT_STYLES)
    if only_think:
        return _enc(tok, THINK_START)
    if style == "chat":
        base = chat_prefix(tok, question)
    else:
        text = format_prompt(question)
        base = special_prefix(tok) + _enc(tok, text[: -len(THINK_START)] if text.endswith(THINK_START) else text)
    return base + (_enc(tok, THINK_START) if think else [])


def chat_prefix(tok, question: str) -> list[int]:
    """The chat template's ids for a user turn asking `question`, up to where the assistant's `<think>` goes."""
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"PROMPT='chat' needs a tokenizer with a chat template; {tok.name_or_path!r} has none "
                         "(use PROMPT='plain').")
    text = tok.apply_chat_template([{"role": "user", "content": question + CHAT_INSTRUCTION}],
                                   add_generation_prompt=True, tokenize=False)
    stripped = text.rstrip()  # newer R1 templates already open the thinking: it is added back as THINK_START
    return _enc(tok, stripped[: -len(THINK_START)] if stripped.endswith(THINK_START) else text)


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


def sft_example(tok, question: str, thinking: str | list[int], answer: str, budget: int | None = None,
                style: str = "plain"):
    """A TrainSeq for SFT: prompt tokens (in prompt `style`) untrained, target tokens trained with weight 1."""
    from budgetlab.packing import TrainSeq

    prompt = encode_prompt(tok, question, think=budget is None, style=style)
    _, target = encode_target(tok, thinking, answer, budget)
    ids = prompt + target
    return TrainSeq(ids, [0.0] * len(prompt) + [1.0] * len(target), [False] * len(prompt) + [True] * len(target))
