"""Budget grids and priors over them: the thinking-token budgets b_1 < ... < b_S and their weights P.

Budgets always count thinking tokens (SPEC §6). The prior P says how much each budget's forced-summary
reward counts in BRPO's return (AnytimeReasoner, "Optimizing Anytime Reasoning via Budget Relative
Policy Optimization", section 3) and in the anytime score.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import numpy as np

from budgetlab.config import check_choice


def validate_budgets(budgets: Sequence[int], name: str = "budgets") -> list[int]:
    """The budgets as a list of ints if non-empty, positive and strictly increasing, else ValueError naming
    `name` (the parameter the user typed, such as TRAIN_BUDGETS)."""
    if isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__"):
        raise ValueError(f"{name}={budgets!r} is not a list; give positive, strictly increasing ints.")
    values = list(budgets)
    if not values:
        raise ValueError(f"{name}=[] is empty; give at least one positive int thinking-token budget.")
    for b in values:
        if isinstance(b, bool) or not isinstance(b, numbers.Integral):
            raise ValueError(f"budget {b!r} in {name}={values} is not an int; budgets are counts of thinking tokens.")
        if b <= 0:
            raise ValueError(f"budget {b!r} in {name}={values} is not positive; budgets must be >= 1 token.")
    out = [int(b) for b in values]
    for prev, cur in zip(out, out[1:]):
        if cur <= prev:
            raise ValueError(f"{name}={out} is not strictly increasing ({prev} then {cur}); sort and deduplicate it.")
    return out


# Unnormalised prior shapes over a validated grid (AnytimeReasoner's uniform / linear / base priors).
def _uniform(b: np.ndarray) -> np.ndarray:
    return np.ones_like(b, dtype=np.float64)


def _linear(b: np.ndarray) -> np.ndarray:
    return b.astype(np.float64)


def _base(b: np.ndarray) -> np.ndarray:
    w = np.zeros_like(b, dtype=np.float64)
    w[-1] = 1.0  # all mass on the largest budget: ordinary full-length training
    return w


PRIORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "uniform": _uniform,  # P_j = 1/S
    "linear": _linear,  # P_j ∝ b_j
    "base": _base,  # P_S = 1
}


def prior_weights(kind: str, budgets: Sequence[int]) -> np.ndarray:
    """P[S] for a prior kind ("uniform" | "linear" | "base") over the budget grid; sums to 1."""
    check_choice("prior", kind, sorted(PRIORS))
    b = np.asarray(validate_budgets(budgets), dtype=np.int64)
    w = PRIORS[kind](b)
    return w / w.sum()


GRID_KINDS = ("linear", "geometric")


def budget_grid(max_budget: int, n: int, kind: str = "linear") -> list[int]:
    """A budget grid ending at max_budget with at most n points: evenly spaced, or halving down from the top.

    linear: round(max_budget * i / n) for i = 1..n; geometric: round(max_budget / 2**(n - i)).
    Values are rounded half up, raised to at least 1 and deduplicated, so a small max_budget gives fewer
    than n points (budget_grid(3, 5) == [1, 2, 3]).
    """
    check_choice("kind", kind, GRID_KINDS)
    for name, value in (("max_budget", max_budget), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}={value!r} is not accepted; give an int >= 1.")
    if kind == "linear":
        raw = [max_budget * i / n for i in range(1, n + 1)]
    else:
        raw = [max_budget / 2 ** (n - i) for i in range(1, n + 1)]
    grid = sorted({max(1, math.floor(x + 0.5)) for x in raw})
    return validate_budgets(grid)
