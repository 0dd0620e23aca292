"""Anytime evaluation: pure scoring of accuracy-by-budget curves (SPEC §8).

The anytime score is Σ_j p_j · accuracy_j over the evaluation grid (AnytimeReasoner, "Optimizing Anytime
Reasoning via Budget Relative Policy Optimization", section 2), p uniform unless given.
"""

from __future__ import annotations

import math
import numbers
from statistics import NormalDist
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from budgetlab.budgets import validate_budgets

if TYPE_CHECKING:  # pandas only in annotations: the scoring stays importable without it
    import pandas as pd


def _budget_key(key) -> int:
    """A budget key as an int; JSON round trips turn int keys into strings such as "16"."""
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise ValueError(f"budget key {key!r} is not an int; accuracy_by_budget maps thinking-token budgets to accuracy.")
    return int(key)


def anytime_score(accuracy_by_budget: Mapping[int, float], weights: Sequence[float] | None = None) -> float:
    """Σ_j p_j · acc_j over budgets sorted ascending; p uniform unless weights (non-negative, sum 1) are given."""
    if not accuracy_by_budget:
        raise ValueError("accuracy_by_budget is empty; give at least one {budget: accuracy} entry.")
    items = sorted((_budget_key(b), a) for b, a in accuracy_by_budget.items())
    validate_budgets([b for b, _ in items])  # positive and distinct ("16" and 16 collide)
    acc = np.array([float(a) for _, a in items], dtype=np.float64)
    if not (np.isfinite(acc).all() and (acc >= 0).all() and (acc <= 1).all()):
        raise ValueError(f"accuracies {acc.tolist()} are not all within [0, 1].")
    if weights is None:
        p = np.full(len(acc), 1.0 / len(acc))
    else:
        p = np.asarray([float(w) for w in weights], dtype=np.float64)
        if p.shape != acc.shape:
            raise ValueError(f"weights has {p.size} entries but there are {acc.size} budgets; give one weight per budget.")
        if not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
            raise ValueError(f"weights={p.tolist()} are not accepted; give non-negative weights that sum to 1.")
    return float(np.dot(p, acc))


def accuracy_ci(successes: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean success rate and its Wilson score interval at `level`.

    Wilson: centre = (p̂ + z²/2n) / (1 + z²/n), half = z·sqrt(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n), with n the
    number of entries (any shape, flattened). Entries are 0/1 outcomes (bools fine); fractional entries in
    [0, 1], such as per-problem means over samples, are accepted as an approximation that treats each
    entry as one trial. Unlike the normal interval it stays inside [0, 1] and is not empty at p̂ = 0 or 1.
    """
    x = np.asarray(successes, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("successes is empty; give at least one 0/1 outcome.")
    if not (np.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()):
        raise ValueError("successes holds values outside [0, 1]; give 0/1 outcomes (or per-problem rates).")
    if not (0.0 < float(level) < 1.0):
        raise ValueError(f"level={level!r} is outside the accepted range (0, 1); use e.g. 0.95.")
    n, p = x.size, float(x.mean())
    z = NormalDist().inv_cdf(0.5 + float(level) / 2)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if p == 0.0 else max(0.0, centre - half)  # exact ends: rounding would leave 1e-17 there
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return p, low, high


# ---- aggregations of an anytime evaluation table (budgetlab.anytime.evaluate_model) --------------


def curve_table(df: "pd.DataFrame") -> "pd.DataFrame":
    """Per model and budget: accuracy with a 95% interval over problems × samples, and n."""
    import pandas as pd

    rows = []
    for (model, budget), grp in df.groupby(["model", "budget"], sort=False):
        mean, low, high = accuracy_ci(grp["correct"].to_numpy(dtype=float))
        rows.append({"model": model, "budget": int(budget), "accuracy": mean, "low": low, "high": high,
                     "n": len(grp)})
    return pd.DataFrame(rows)


def _summary_of(grp: "pd.DataFrame", weights=None) -> dict:
    acc = {int(b): float(g["correct"].mean()) for b, g in grp.groupby("budget")}
    per_trace = grp.drop_duplicates(["id", "sample"])
    style = per_trace["style_short"].astype(float).mean() if "style_short" in per_trace else float("nan")
    return {"anytime_score": anytime_score(acc, weights), "accuracy_by_budget": acc,
            "mean_thinking_tokens": float(per_trace["n_thinking"].mean()), "short_style_share": float(style),
            "format_rate": float(grp["formatted"].mean()), "n_problems": int(grp["id"].nunique())}


def summarize(df: "pd.DataFrame", weights=None) -> dict[str, dict]:
    """Per model: anytime score, accuracy by budget, mean thinking tokens, format rate, and all of it by level."""
    out = {}
    for model, grp in df.groupby("model", sort=False):
        s = _summary_of(grp, weights)
        s["by_level"] = {int(lv): _summary_of(g, weights) for lv, g in grp.groupby("level")}
        out[model] = s
    return out


def benchmark_scores(df: "pd.DataFrame", weights=None) -> dict[str, dict[str, float]]:
    """{model: {benchmark: anytime score, ..., "average": their unweighted mean}}: AnytimeReasoner's table, each
    test set counted once whatever its size. df: an evaluate_model table with a `benchmark` column."""
    out: dict[str, dict[str, float]] = {}
    for (model, bench), grp in df.groupby(["model", "benchmark"], sort=False):
        out.setdefault(model, {})[bench] = _summary_of(grp, weights)["anytime_score"]
    for scores in out.values():
        scores["average"] = float(np.mean(list(scores.values())))
    return out


def reward_trend(metrics: "pd.DataFrame") -> "pd.DataFrame":
    """Per method: mean reward over the first and the second half of the steps, their difference, and the
    least-squares slope per step (one step's reward is a few samples: read the halves, not single steps)."""
    import pandas as pd

    rows = []
    for method, grp in metrics.sort_values("step").groupby("method", sort=False):
        r, half = grp["reward"].to_numpy(float), len(grp) // 2
        slope = float(np.polyfit(grp["step"].to_numpy(float), r, 1)[0]) if len(grp) > 1 else float("nan")
        first, second = (float(r[:half].mean()), float(r[half:].mean())) if half else (float("nan"), float(r.mean()))
        rows.append({"method": method, "steps": len(grp), "first_half": first, "second_half": second,
                     "rise": second - first, "slope_per_step": slope})
    return pd.DataFrame(rows)


def declared_tracking(df: "pd.DataFrame") -> dict:
    """How SelfBudgeter's declared budgets follow difficulty, from its rows of an `evaluate_model` table.

    One row per answer (the largest budget): the share that declared a budget, Spearman's rank correlation
    of the declared budget with the level, and per level the mean declared budget and actual thinking."""
    from scipy.stats import spearmanr

    last = df[df["budget"] == df["budget"].max()]
    declared = last.dropna(subset=["declared"]).astype({"declared": float})
    rho = float("nan")
    if len(declared) > 2 and declared["declared"].nunique() > 1 and declared["level"].nunique() > 1:
        rho = float(spearmanr(declared["level"], declared["declared"]).statistic)
    by_level = declared.groupby("level")[["declared", "n_thinking"]].mean()
    return {"declared_share": len(declared) / len(last) if len(last) else 0.0, "spearman_with_level": rho,
            "by_level": {int(lv): {"declared": float(r.declared), "n_thinking": float(r.n_thinking)}
                         for lv, r in by_level.iterrows()}}
