"""A fixed-problem probe of the policy during RL: the same problems, greedy, every k steps.

One RL step's reward averages a few samples on a few freshly drawn prompts, so it mostly says how hard
that step's prompts were. The probe answers the same problems greedily each time, so its accuracy moves
only when the policy does: it is the learning curve to read. SelfBudgeter's probe also reports how its
declared budgets follow the problems' levels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from budgetlab.anytime import evaluate_model
from budgetlab.evaluate import declared_tracking


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


def probe(model, tok, rows: Sequence[dict], budget: int, max_summary: int, self_budget: bool = False) -> dict:
    """Greedy answers to `rows` at one thinking budget: accuracy, thinking length and, with `self_budget`,
    the mean declared budget and its Spearman correlation with the level."""
    df = evaluate_model(model, tok, rows, [budget], max_summary=max_summary, do_sample=False,
                        budget_tag="self" if self_budget else None, progress=False)
    out = {"probe_acc": float(df["correct"].mean()), "probe_thinking": float(df["n_thinking"].mean()),
           "probe_closed": float(df["closed"].mean())}
    if self_budget:
        tracking = declared_tracking(df)
        out["probe_declared"] = float(df["declared"].astype(float).mean())
        out["probe_declared_rho"] = tracking["spearman_with_level"]
    return out
