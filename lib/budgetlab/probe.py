"""A fixed-problem probe of the policy during RL: the same problems and the same random draws every k steps.

One RL step's reward averages a few samples on a few freshly drawn prompts, so it mostly says how hard
that step's prompts were. The probe samples k answers to each of the same problems, at the training
temperature and from the same seed each time, so its mean reward moves only when the policy does: it is
the learning curve to read. Each answer's thinking is cut at every training budget, as in a BRPO step, so
the probe reports both the reward at the largest budget (what GRPO maximises) and the anytime score over
the grid (what BRPO maximises). SelfBudgeter's probe also reports how its declared budgets follow the levels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from budgetlab.anytime import evaluate_model
from budgetlab.evaluate import anytime_score, declared_tracking


def probe_rows(rows: Sequence[dict], n: int, seed: int = 0) -> list[dict]:
    """A fixed set of n rows (all of them when n >= len(rows)), spread over levels: round-robin by level."""
    if int(n) < 1:
        raise ValueError(f"n={n!r} must be a positive integer (problems in the probe).")
    rng = np.random.default_rng(seed)
    by_level: dict = {}
    for i in rng.permutation(len(rows)):
        by_level.setdefault(rows[i].get("level", 0), []).append(rows[i])
    queues, out = [by_level[lv] for lv in sorted(by_level)], []
    while len(out) < min(int(n), len(rows)):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def probe(model, tok, rows: Sequence[dict], budgets: Sequence[int], max_summary: int, *, samples: int = 4,
          temperature: float = 1.0, seed: int = 0, budget_tag: str | int | None = None, precision: str = "auto",
          answer_rule: str = "last_boxed", prompt: str = "plain") -> dict:
    """`samples` answers to each row, cut at each of `budgets`, drawn from `seed` (the caller's random state is
    left as it was): mean correctness at the largest budget, the anytime score (uniform over `budgets`), thinking
    length, closed share and, with `budget_tag="self"` (SelfBudgeter), the mean declared budget and its Spearman
    correlation with the level. An int `budget_tag` pre-fills that budget (L1), as in `evaluate_model`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        df = evaluate_model(model, tok, rows, budgets, samples=samples, do_sample=True, temperature=temperature,
                            max_summary=max_summary, budget_tag=budget_tag, progress=False,
                            precision=precision, answer_rule=answer_rule, prompt=prompt)
    by_budget = df.groupby("budget")["correct"].mean()
    first = df[df["budget"] == by_budget.index.max()]  # one row per answer
    out = {"probe_reward": float(by_budget.iloc[-1]), "probe_anytime": anytime_score(by_budget.to_dict()),
           "probe_thinking": float(first["n_thinking"].mean()), "probe_closed": float(first["closed"].mean())}
    if budget_tag == "self":
        out["probe_declared"] = float(first["declared"].astype(float).mean())
        out["probe_declared_rho"] = declared_tracking(df)["spearman_with_level"]
    return out
