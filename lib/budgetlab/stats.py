"""Method-vs-method effects: per-problem metrics, bootstrap intervals over problems, and verdict words.

An effect compares two models on the same evaluation problems (an `evaluate_model` long table), gets a
percentile-bootstrap interval from `scipy.stats.bootstrap`, and a verdict on a seed paper's claim.
`effects_table` lists the claims in `CLAIMS`; adding a claim is one entry there.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas only in annotations, as in budgetlab.evaluate
    import pandas as pd

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
DIRECTIONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
METRICS = ("anytime", "accuracy@<budget>", "accuracy@max", "thinking_tokens", "style_share")


class NotEnoughData(ValueError):
    """Too few problems or answers for an interval; `effects_table` turns it into an inconclusive row."""


# ---- per-problem metrics of one model -------------------------------------------------------------


def _anytime(rows: "pd.DataFrame") -> "pd.Series":
    # mean over samples per budget, then uniform over the grid: that problem's anytime score
    return rows.groupby(["id", "budget"])["correct"].mean().groupby(level="id").mean()


def _per_trace(column: str, rows: "pd.DataFrame") -> "pd.Series":
    # every budget row of a trace repeats its thinking length and style: count each trace once
    if column not in rows:
        raise ValueError(f"this table has no {column!r} column, which the metric needs.")
    return rows.drop_duplicates(["id", "sample"]).astype({column: float}).groupby("id")[column].mean()


def _accuracy_at(rows: "pd.DataFrame", budget: str) -> "pd.Series":
    grid = sorted(int(b) for b in rows["budget"].unique())
    b = grid[-1] if budget == "max" else int(budget) if budget.isdigit() else None
    if b not in grid:
        raise ValueError(f"budget {budget!r} is not on the evaluation grid {grid}; use one of them or 'max'.")
    return rows[rows["budget"] == b].groupby("id")["correct"].mean().rename(f"accuracy@{b}")


_METRICS = {"anytime": _anytime, "thinking_tokens": partial(_per_trace, "n_thinking"),
            "style_share": partial(_per_trace, "style_short")}


def per_problem(df: "pd.DataFrame", model: str, metric: str) -> "pd.Series":
    """Series indexed by problem id: `metric` of `model` per problem, averaged over samples (see METRICS)."""
    rows = df[df["model"] == model].astype({"correct": float})
    if rows.empty:
        raise ValueError(f"model={model!r} has no rows; models present: {sorted(df['model'].unique())}.")
    name, _, budget = metric.partition("@")
    if name == "accuracy" and budget:
        return _accuracy_at(rows, budget)
    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r} is not known; use one of {list(METRICS)}.")
    return _METRICS[metric](rows).rename(metric).astype(float)


# ---- bootstrap intervals ----------------------------------------------------------------------------


def _interval(samples: tuple, statistic, level: float, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """(estimate, low, high): statistic(*samples) and its percentile-bootstrap interval at `level`.

    Percentile, not BCa: with tens of problems BCa's jackknife acceleration is itself noisy, and BCa returns
    NaN when the resamples tie; percentile is always defined and stays in the statistic's range (rho in
    [-1, 1], rates in [0, 1]). Its known cost is some under-coverage for small n and skewed statistics."""
    from scipy.stats import bootstrap

    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level={level!r} is outside the accepted range (0, 1); use e.g. 0.95.")
    samples = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    estimate = float(statistic(*samples, axis=-1))
    if all(np.ptp(s) == 0 for s in samples):  # every resample equals the data: the interval is [d, d]
        return estimate, estimate, estimate
    with np.errstate(divide="ignore", invalid="ignore"):  # a ratio over an all-zero resample is inf/NaN
        res = bootstrap(samples, statistic, n_resamples=n_resamples, paired=True, vectorized=True,
                        confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _finite(name: str, x, need: int) -> np.ndarray:
    """x as a flat float array of at least `need` finite values."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if len(x) < need:
        raise NotEnoughData(f"{name} has {len(x)} value(s); an interval needs at least {need}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf; give finite per-problem values.")
    return x


def _common(a: "pd.Series", b: "pd.Series") -> tuple[np.ndarray, np.ndarray]:
    """a and b on the problem ids both hold a value for (NaN: no value, e.g. no style to measure), in one order;
    at least 2 of them."""
    ids = a.dropna().index.intersection(b.dropna().index)
    if len(ids) < 2:
        raise NotEnoughData(f"a and b share {len(ids)} problem id(s); a paired interval needs at least 2.")
    return _finite("a", a.loc[ids], 2), _finite("b", b.loc[ids], 2)


def paired_difference(a: "pd.Series", b: "pd.Series", level: float = 0.95, n_resamples: int = 1999,
                      seed: int = 0) -> dict:
    """{difference: mean(a − b) over the common problem ids, low, high: paired bootstrap interval, n}."""
    x, y = _common(a, b)
    d, low, high = _interval((x - y,), np.mean, level, n_resamples, seed)
    return {"difference": d, "low": low, "high": high, "n": len(x)}


def _relative(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) / np.mean(y, axis=axis) - 1.0


def paired_relative_change(a: "pd.Series", b: "pd.Series", level: float = 0.95, n_resamples: int = 1999,
                           seed: int = 0) -> dict:
    """{difference: mean(a)/mean(b) − 1 over common ids, low, high: paired bootstrap interval, n}.

    A ratio of means (total tokens), not a mean of per-problem ratios: a problem on which b thinks a few
    tokens would otherwise dominate, and "thinks 40% less" reads as a share of all thinking."""
    x, y = _common(a, b)
    if y.mean() <= 0:
        raise ValueError(f"b has mean {y.mean()!r}; a relative change needs a positive baseline mean.")
    r, low, high = _interval((x, y), _relative, level, n_resamples, seed)
    return {"difference": r, "low": low, "high": high, "n": len(x)}


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis` (Pearson of average ranks); 0.0 where x or y is constant (no tracking)."""
    from scipy.stats import rankdata

    rx, ry = (rankdata(v, axis=axis) for v in (x, y))
    rx, ry = rx - rx.mean(axis=axis, keepdims=True), ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    return np.divide((rx * ry).sum(axis=axis), den, out=np.zeros_like(den), where=den > 1e-12)


def spearman_interval(x, y, level: float = 0.95, n_resamples: int = 1999, seed: int = 0) -> dict:
    """{rho: Spearman(x, y), low, high: bootstrap over (x_i, y_i) pairs, n}.

    A resample whose x or y is constant has no defined rho; it counts as 0.0 (no tracking), which can only
    pull the interval toward zero. Constant x or y in the data itself is refused (NotEnoughData)."""
    x, y = _finite("x", x, 3), _finite("y", y, 3)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values and y {len(y)}; give one y per x.")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise NotEnoughData("x or y is constant; Spearman's rho is undefined.")
    rho, low, high = _interval((x, y), _spearman, level, n_resamples, seed)
    return {"rho": rho, "low": low, "high": high, "n": len(x)}


# ---- verdicts -----------------------------------------------------------------------------------------


def verdict(low: float, high: float, threshold: float = 0.0, direction: str = ">") -> str:
    """The word for the claim "effect <direction> threshold" given the effect's interval [low, high].

    The claimed side is C = {x : x <direction> threshold}. "reproduced": the whole interval lies in C (both
    ends do); "not reproduced": none of it does (both ends outside C); "inconclusive": the interval
    straddles the threshold, or a bound is NaN. Touching follows the strictness of `direction`: for ">"
    [t, 0.3] is inconclusive (t itself is not > t) and [-0.3, t] not reproduced; for ">=" the first is
    reproduced and the second inconclusive."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not known; use one of {list(DIRECTIONS)}.")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r} is not a finite number.")
    if np.isnan(low) or np.isnan(high):
        return "inconclusive"
    if low > high:
        raise ValueError(f"low={low!r} is above high={high!r}; give the interval as (low, high).")
    inside = DIRECTIONS[direction]
    ends = inside(low, threshold), inside(high, threshold)
    return "reproduced" if all(ends) else "not reproduced" if not any(ends) else "inconclusive"


# ---- the seed papers' claims --------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A seed paper's claim "effect(a vs b) <direction> threshold"; `effect` is a key of EFFECTS."""
    claim: str
    paper: str
    effect: str
    metric: str
    a: str
    b: str
    threshold: float
    direction: str


def _present(df: "pd.DataFrame", *models: str) -> bool:
    return all((df["model"] == m).any() for m in models)


def _paired_effect(compare, label: str, df, c: Claim, sc, boot: dict) -> dict | None:
    if not _present(df, c.a, c.b):
        return None
    a, b = per_problem(df, c.a, c.metric), per_problem(df, c.b, c.metric)
    return {**compare(a, b, **boot), "metric": label + a.name}


def _spearman_effect(df, c: Claim, sc, boot: dict) -> dict | None:
    if not _present(df, c.a) or "declared" not in df:
        return None  # one row per answer: the largest budget, answers that declared a budget
    rows = df[df["model"] == c.a]
    rows = rows[rows["budget"] == rows["budget"].max()].dropna(subset=["declared"])
    s = spearman_interval(rows[c.b], rows["declared"], **boot)
    return {"difference": s["rho"], "low": s["low"], "high": s["high"], "n": s["n"], "metric": c.metric}


def _self_consistency_effect(df, c: Claim, sc, boot: dict) -> dict | None:
    """a's accuracy vs the self-consistency k whose mean cost is nearest a's mean thinking tokens, paired over
    the problems both answered. sc: per-problem votes (`anytime.self_consistency_votes`: columns k, id, correct,
    thinking_tokens). Nearest point, not interpolation: an interpolated accuracy was achieved by no vote."""
    if sc is None or len(sc) == 0 or not _present(df, c.a):
        return None
    if missing := {"k", "id", "correct", "thinking_tokens"} - set(sc.columns):
        raise ValueError(f"the self-consistency table lacks column(s) {sorted(missing)}; give the per-problem "
                         "votes of anytime.self_consistency_votes.")
    acc, cost = per_problem(df, c.a, c.metric), float(per_problem(df, c.a, "thinking_tokens").mean())
    points = sc.groupby("k", sort=False)["thinking_tokens"].mean()
    k = points.index[int(np.argmin(np.abs(points.to_numpy(float) - cost)))]  # ties: the first k
    votes = sc[sc["k"] == k].set_index("id")["correct"].astype(float)
    return {**paired_difference(acc, votes, **boot), "metric": f"{acc.name} vs self-consistency",
            "note": f"self-consistency k={int(k)} at {points[k]:.1f} thinking tokens vs {c.a} {cost:.1f}"}


EFFECTS = {"difference": partial(_paired_effect, paired_difference, ""),
           "relative": partial(_paired_effect, paired_relative_change, "relative change in "),
           "spearman": _spearman_effect, "self_consistency": _self_consistency_effect}

# Directions follow each claim's words: "exceeds" is >, "at most" / "at least" / "at or above" include the bound.
CLAIMS = (
    Claim("BRPO's anytime score exceeds GRPO's", "AnytimeReasoner", "difference", "anytime", "brpo", "grpo",
          0.0, ">"),
    Claim("SelfBudgeter thinks at least 40% less than the warm start", "SelfBudgeter", "relative",
          "thinking_tokens", "selfbudgeter", "warmstart", -0.4, "<="),
    Claim("SelfBudgeter loses at most 3 points of accuracy at the largest budget", "SelfBudgeter", "difference",
          "accuracy@max", "selfbudgeter", "warmstart", -0.03, ">="),
    Claim("SelfBudgeter's declared budgets track difficulty (Spearman >= 0.5)", "SelfBudgeter", "spearman",
          "spearman(declared, level)", "selfbudgeter", "level", 0.5, ">="),
    Claim("IBPO is at or above self-consistency at matched mean thinking tokens", "IBPO", "self_consistency",
          "accuracy@max", "ibpo", "self-consistency", 0.0, ">="),
)


# The testbed's ground truth, stated before any run (data/README.md): below the largest budget the short style
# wins, so methods that value shorter thinking should write more short-style steps than the warm start.
TESTBED_CLAIMS = tuple(
    Claim(f"testbed: {name} writes more short-style steps than the warm start", "testbed ground truth",
          "difference", "style_share", method, "warmstart", 0.0, ">")
    for method, name in (("brpo", "BRPO"), ("selfbudgeter", "SelfBudgeter"), ("ibpo", "IBPO"), ("l1", "L1")))


def effects_table(df: "pd.DataFrame", sc: "pd.DataFrame | None" = None, *, level: float = 0.95,
                  n_resamples: int = 1999, seed: int = 0, claims: tuple[Claim, ...] = CLAIMS) -> list[dict]:
    """One row per claim whose models are in df (others skipped): effect, interval, threshold and verdict."""
    boot, nan = {"level": level, "n_resamples": n_resamples, "seed": seed}, float("nan")
    rows = []
    for c in claims:
        try:
            e = EFFECTS[c.effect](df, c, sc, boot)
        except NotEnoughData as err:  # a tiny run still gets its row, with no interval
            e = {"difference": nan, "low": nan, "high": nan, "n": 0, "note": str(err)}
        if e is not None:
            rows.append({"claim": c.claim, "paper": c.paper, "metric": e.get("metric", c.metric), "a": c.a,
                         "b": c.b, "difference": e["difference"], "low": e["low"], "high": e["high"],
                         "threshold": c.threshold, "direction": c.direction,
                         "verdict": verdict(e["low"], e["high"], c.threshold, c.direction), "n": e["n"],
                         "note": e.get("note", "")})
    return rows
