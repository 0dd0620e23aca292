"""Anytime evaluation of a model: one thinking pass per sample, cut at every budget, a forced summary each.

`evaluate_model` returns a long table (one row per problem × sample × budget) that the pure
aggregations in `budgetlab.evaluate` turn into curves, scores and splits by difficulty.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import pandas as pd

from budgetlab.budgets import validate_budgets
from budgetlab.precision import use_bf16
from budgetlab.prompts import encode_prompt
from budgetlab.grading import extract_boxed, grade, graded_text, is_correct
from budgetlab.inference import evaluation_decoder
from budgetlab.rollout import HFRollout
from budgetlab.selfbudget import budget_tag_prompts
from budgetlab.synthetic import short_style_share
from budgetlab.truncation import parse_budget_tag


def evaluate_model(model, tok, rows: Sequence[dict], budgets: Sequence[int], *, samples: int = 1,
                   max_summary: int = 12, do_sample: bool | None = None, temperature: float = 1.0,
                   budget_tag: str | int | None = None, batch_size: int = 64, progress: bool = True,
                   name: str = "model", precision: str = "auto", answer_rule: str = "last_boxed",
                   prompt: str = "plain") -> pd.DataFrame:
    """Long table of graded forced summaries: columns id, level, sample, budget, correct, formatted, ...

    `budget_tag`: None (plain prompt), "self" (the model writes `<budget>N</budget>` first, SelfBudgeter)
    or an int N (pre-filled tag: the user sets the budget). Greedy unless samples > 1 or do_sample.
    `precision` (auto | fp32 | bf16, `budgetlab.precision`): bf16 decodes with the bf16 copy RL samples from
    (LoRA merged, packed oneDNN weights where faster); fp32 with a merged copy on oneDNN's packed weights where
    this CPU runs that faster, else with `model` itself (`inference.evaluation_decoder`).
    `answer_rule` (`grading.ANSWER_RULES`): the answer graded, the last \\boxed{} or the seeds' first after the cue.
    `prompt` (`prompts.PROMPT_STYLES`): the project's plain prompt or the tokenizer's chat template.
    """
    budgets = validate_budgets(budgets)
    if samples < 1:
        raise ValueError(f"samples={samples!r} must be a positive integer.")
    do_sample = samples > 1 if do_sample is None else do_sample
    bf16 = use_bf16(precision, model)
    rollout = HFRollout(evaluation_decoder(model, bf16), tok, temperature=temperature, batch_size=batch_size,
                        summary_bf16=bf16)
    expanded = [r for r in rows for _ in range(samples)]
    spans = None
    if budget_tag is None:
        prompts = [encode_prompt(tok, r["question"], style=prompt) for r in expanded]
    else:
        prompts, spans = budget_tag_prompts(tok, [r["question"] for r in expanded], rollout,
                                            prefill=None if budget_tag == "self" else int(budget_tag),
                                            do_sample=do_sample, style=prompt)
    out = []
    chunks = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"eval {name}", leave=False)
    for start in chunks:
        part = prompts[start:start + batch_size]
        traces = rollout.rollout(part, budgets, n_summaries=1, max_summary=max_summary, do_sample=do_sample,
                                 trained_prefix=spans[start:start + batch_size] if spans else None)
        for k, tr in enumerate(traces):
            i = start + k
            row = expanded[i]
            s, e = tr.trained_prefix
            declared = parse_budget_tag(tok.decode(tr.prompt_ids[s:e])) if e > s else None
            style = short_style_share(tok.decode(tr.thinking_ids))  # the testbed's planted choice; None: no step
            graded: dict[int, dict] = {}  # a summary shared by several budgets (closed thinking) is graded once
            for j, b in enumerate(budgets):
                sm = tr.summaries[j][0]
                if id(sm) not in graded:
                    fmt, ok = grade(sm.text, row["answer"], answer_rule)  # unformatted: 0, not parsed
                    graded[id(sm)] = {"formatted": fmt, "correct": bool(fmt and ok),
                                      "answer": extract_boxed(graded_text(sm.text, answer_rule)),
                                      "summary": tok.decode(sm.ids, skip_special_tokens=True)}
                out.append({"model": name, "id": row["id"], "level": row.get("level", 0), "sample": i % samples,
                            "budget": b, "kept": sm.kept, "truncated": sm.truncated, "closed": tr.closed,
                            "n_thinking": tr.n_thinking, "declared": declared, "style_short": style,
                            **graded[id(sm)]})
    return pd.DataFrame(out)


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most common non-empty answer (ties: the first seen), None if there is none (None/NaN are no vote)."""
    answers = [a for a in answers if isinstance(a, str) and a]
    votes = Counter(answers)
    return max(votes, key=lambda a: (votes[a], -answers.index(a))) if votes else None


def self_consistency_votes(df: pd.DataFrame, references: dict[str, str], ks: Sequence[int]) -> pd.DataFrame:
    """Per k and problem: whether the majority vote over the first k samples at the largest budget is correct,
    and its thinking cost (Σ thinking tokens of the k samples). df: an `evaluate_model` table with samples > 1."""
    last = df[df["budget"] == df["budget"].max()].sort_values(["id", "sample"])
    rows = []
    for k in ks:
        for pid, grp in last.groupby("id", sort=False):
            top = grp.head(k)
            vote = majority_vote(list(top["answer"]))
            rows.append({"k": k, "id": pid,
                         "correct": bool(vote is not None and is_correct("\\boxed{" + vote + "}", references[pid])),
                         "thinking_tokens": float(top["n_thinking"].sum())})
    return pd.DataFrame(rows)


def self_consistency(votes: pd.DataFrame) -> pd.DataFrame:
    """Per k: accuracy and mean thinking cost of majority voting, aggregated from `self_consistency_votes`."""
    return (votes.groupby("k", sort=False).agg(accuracy=("correct", "mean"), mean_thinking_tokens=("thinking_tokens", "mean"))
            .reset_index().astype({"accuracy": float}))
