"""SelfBudgeter: phase-1 budget labels and SFT examples, the budget-tag prompt, the phase-2 reward table.

Phase 1 labels each question with the length of the warm-start model's own correct thinking (the shortest
of k samples; infinity when no sample was correct); SFT then teaches the model to write `<budget>N</budget>`
with that N before thinking (SelfBudgeter, §3.1). Phase 2 is GRPO on the budget-guided reward (SPEC §7).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from budgetlab.config import check_choice
from budgetlab.inference import generation_copy
from budgetlab.packing import TrainSeq
from budgetlab.precision import dtype_name, use_bf16
from budgetlab.prompts import encode_prompt, sft_example
from budgetlab.rewards import correctness_reward, selfbudgeter_reward_parts
from budgetlab.rollout import HFRollout
from budgetlab.truncation import BUDGET_TAG, parse_budget_tag


def budget_labels(model, tok, rows: Sequence[dict], max_thinking: int, max_summary: int = 12,
                  batch_size: int = 64, samples: int = 1, precision: str = "auto",
                  answer_rule: str = "last_boxed", prompt: str = "plain") -> list[dict]:
    """Warm-start answers per row: {id, level, correct, length (inf if never correct), thinking_ids, pass_rate}.

    `samples` = 1 answers greedily; k > 1 samples k answers and keeps the shortest correct one, so harder
    questions, which the model solves only sometimes, get labels too (SPEC §5: pass rate and correct length
    over k samples). Answers come from the model's generation copy in `precision`'s dtype, as RL rollouts do.
    """
    if int(samples) < 1:
        raise ValueError(f"samples={samples!r} must be a positive integer.")
    if not rows:  # SB_PROBLEMS = 0: phase 1 is skipped
        return []
    k = int(samples)
    bf16 = use_bf16(precision, model)
    copy = generation_copy(model, dtype_name(bf16))  # budgetlab.inference; None for a 4-bit base
    rollout = HFRollout(copy.model if copy else model, tok, batch_size=batch_size, summary_bf16=bf16)
    prompts = [encode_prompt(tok, r["question"], style=prompt) for r in rows for _ in range(k)]
    traces = rollout.rollout(prompts, [max_thinking], max_summary=max_summary, do_sample=k > 1)
    out = []
    for i, row in enumerate(rows):
        mine = traces[i * k:(i + 1) * k]
        ok = [tr.closed and correctness_reward(tr.summaries[-1][0].text, row["answer"], answer_rule) == 1.0
              for tr in mine]
        best = pick_label([tr.n_thinking for tr in mine], ok)
        out.append({"id": row["id"], "level": row.get("level", 0), "correct": best is not None,
                    "length": mine[best].n_thinking if best is not None else math.inf,
                    "thinking_ids": mine[best].thinking_ids if best is not None else mine[0].thinking_ids,
                    "pass_rate": sum(ok) / k})
    return out


def pick_label(lengths: Sequence[int], correct: Sequence[bool]) -> int | None:
    """Index of the shortest correct answer (the first on ties), None when none is correct."""
    best = None
    for i, (n, ok) in enumerate(zip(lengths, correct)):
        if ok and (best is None or n < lengths[best]):
            best = i
    return best


def allowed_lengths(labels: Sequence[dict]) -> dict[str, float]:
    """SelfBudgeter's allowed maximum per question id: the correct length, infinity if the model was wrong.

    Labels read back from JSONL carry None for infinity.
    """
    return {lab["id"]: math.inf if lab["length"] is None else lab["length"] for lab in labels}


def budget_sft_examples(tok, rows: Sequence[dict], labels: Sequence[dict], prompt: str = "plain") -> list[TrainSeq]:
    """SFT examples `<budget>N</budget><think>` + own correct thinking + answer, one per correctly solved row."""
    by_id = {r["id"]: r for r in rows}
    return [sft_example(tok, by_id[lab["id"]]["question"], lab["thinking_ids"], by_id[lab["id"]]["answer"],
                        budget=int(lab["length"]), style=prompt)
            for lab in labels if lab["correct"]]


def budget_tag_prompts(tok, questions: Sequence[str], rollout, prefill: int | Sequence[int] | None = None,
                       do_sample: bool = True, style: str = "plain") -> tuple[list[list[int]], list[tuple[int, int]]]:
    """SelfBudgeter's two-stage prompt: the model writes `<budget>N</budget>` (or N is pre-filled), then `<think>`.

    `prefill` is one N for every question or one per question (L1's targets). Returns the prompt ids and, per
    prompt, the [start, end) span of the tag: trained when the model wrote it.
    """
    bases = [encode_prompt(tok, q, think=False, style=style) for q in questions]
    if prefill is None:
        tags = rollout.sample_prefix(bases, max_new=8, stop="</budget>", do_sample=do_sample)
    else:
        ns = [prefill] * len(bases) if isinstance(prefill, (int, np.integer)) else list(prefill)
        if len(ns) != len(bases):
            raise ValueError(f"prefill has {len(ns)} budgets for {len(bases)} questions; give one, or one per question.")
        tags = [tok.encode(BUDGET_TAG.format(int(n)), add_special_tokens=False) for n in ns]
    think = encode_prompt(tok, "", only_think=True)
    prompts = [b + t + think for b, t in zip(bases, tags)]
    spans = [(len(b), len(b) + len(t)) for b, t in zip(bases, tags)]
    return prompts, spans


# Phase-2 reward variants (RLConfig.sb_reward): "paper" is SPEC §7's reward; the others are candidate fixes of
# its drift to the smallest declared budget (LOG.md), kept selectable so runs can compare them.
SB_REWARDS = ("paper", "two_sided", "gated")
UNDERFLOW_SHARE = 0.5  # two_sided: declaring under half the allowed maximum costs the overflow penalty too
GATE = 0.75  # gated (GRPO-λ): budget terms only in groups whose correct rate reaches this


def selfbudgeter_rewards(tok, traces, rows, generations, allowed: dict, alpha: float,
                         length_when_wrong: bool = True, variant: str = "paper",
                         answer_rule: str = "last_boxed") -> tuple[torch.Tensor, dict]:
    """r[N, G] from SelfBudgeter's reward parts (declared budget vs thinking length), plus mean parts to log.

    `variant` (SB_REWARDS): "paper" as in SPEC §7; "two_sided" also penalises declaring below UNDERFLOW_SHARE
    of the allowed maximum; "gated" pays the budget terms (length match, overflow penalty) only in groups whose
    correct rate is at least GATE, and plain correctness (or the format penalty) elsewhere, as GRPO-λ does.
    """
    check_choice("sb_reward", variant, SB_REWARDS)
    n = len(traces) // generations
    r = torch.zeros((n, generations))
    parts_sum: dict[str, float] = {}
    for i, row in enumerate(rows[:n]):
        group = []
        for tr in traces[i * generations:(i + 1) * generations]:
            s, e = tr.trained_prefix
            tag = tok.decode(tr.prompt_ids[s:e])
            group.append(selfbudgeter_reward_parts(
                tag + tr.summaries[-1][0].text, row["answer"], declared=parse_budget_tag(tag), length=tr.n_thinking,
                allowed_max=allowed.get(row["id"], math.inf), alpha=alpha, length_when_wrong=length_when_wrong,
                underflow_share=UNDERFLOW_SHARE if variant == "two_sided" else None, answer_rule=answer_rule))
        gate_shut = variant == "gated" and sum(p["correct"] for p in group) / generations < GATE
        for k, parts in enumerate(group):
            if gate_shut and parts["format"]:  # a formatted answer in a hard group: plain correctness
                parts.update(budget_penalty=0.0, length=0.0, reward=parts["correct"])
            r[i, k] = parts["reward"]
            for key, v in parts.items():
                if math.isfinite(float(v)):
                    parts_sum[key] = parts_sum.get(key, 0.0) + float(v)
    logs = {f"sb_{k}": v / len(traces) for k, v in parts_sum.items()}
    return r, logs
