"""Advantages for every method (SPEC §7): GRPO, Dr. GRPO, BRPO thinking and summary, and IBPO's selection.

Shapes: N prompts, G thinking traces each, S budgets b_1 < ... < b_S, A summaries per (trace, budget).
Pure functions: tensors (or numpy arrays for IBPO) in, tensors out; nothing here touches a model.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch

from budgetlab.config import check_choice
from budgetlab.truncation import segment_of_tokens

GRPO_EPS = 1e-4
BRPO_MODES = ("brpo", "v1", "v2", "none")


def _as_float(x) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t if torch.is_floating_point(t) else t.to(torch.get_default_dtype())


def _check_dims(name: str, x: torch.Tensor, dims: int, shape: str) -> None:
    if x.dim() != dims:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {dims} dimensions {shape}.")


def grpo_advantages(rewards: torch.Tensor, scale_by_std: bool = True) -> torch.Tensor:
    """A[N, G] = (r - mean_g r) / (std_g r + 1e-4), Bessel-corrected std; zero when G == 1."""
    # GRPO (DeepSeekMath, eq. 3 outcome supervision); Dr. GRPO ("Understanding R1-Zero-like training") drops the std.
    r = _as_float(rewards)
    _check_dims("rewards", r, 2, "[N, G]")
    if r.shape[1] == 1:
        return torch.zeros_like(r)
    centred = r - r.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (r.std(dim=1, correction=1, keepdim=True) + GRPO_EPS)


drgrpo_advantages = partial(grpo_advantages, scale_by_std=False)  # Dr. GRPO: A = r - mean_g r


def brpo_advantages(scores: torch.Tensor, prior: torch.Tensor, mode: str = "brpo",
                    decay: float = 0.5) -> torch.Tensor:
    """A[N, G, S] = R[j] - V[j] with R[j] = Σ_{k≥j} P_k r̄[k] and V = (j·V1 + (S−j)·V2) / S (0-based j).

    scores: r̄[N, G, S], the mean summary reward of each trace at each budget. prior: P[S] (non-negative).
    V2[j] = mean over the G traces of R[j]; V1[0] = 0, V1[j] = (Σ_{k<j} w_k r̄[k] / Σ_{k<j} w_k) · Σ_{k≥j} P_k
    with w_k = decay^{j−k}. mode: "brpo" (V), "v1" (V1), "v2" (V2, GRPO-like), "none" (V = 0). No std division.
    """
    # BRPO (AnytimeReasoner, "Optimizing Anytime Reasoning via Budget Relative Policy Optimization", section 3.3).
    check_choice("mode", mode, BRPO_MODES)
    if not (0.0 < float(decay) <= 1.0):
        raise ValueError(f"decay={decay!r} is outside the accepted range (0, 1]; earlier budgets weigh decay^(j-k).")
    r = _as_float(scores)
    _check_dims("scores", r, 3, "[N, G, S]")
    s = r.shape[2]
    p = torch.as_tensor(prior, dtype=r.dtype, device=r.device)
    if p.shape != (s,):
        raise ValueError(f"prior has shape {tuple(p.shape)}; expected ({s},), one weight per budget of scores.")
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()):
        raise ValueError(f"prior={p.tolist()} has a negative or non-finite weight; give P >= 0 (see prior_weights).")

    # R[j] = Σ_{k≥j} P_k r̄[k] and tail[j] = Σ_{k≥j} P_k: reversed cumulative sums.
    ret = (p * r).flip(-1).cumsum(-1).flip(-1)
    if mode == "none":
        return ret
    v2 = ret.mean(dim=1, keepdim=True).expand_as(ret)
    if mode == "v2":
        return ret - v2
    tail = p.flip(0).cumsum(0).flip(0)
    j = torch.arange(s, dtype=r.dtype, device=r.device)
    # W[j, k] = decay^{j-k} for k < j, else 0: a discounted mean of the trace's own earlier rewards.
    lag = j[:, None] - j[None, :]
    w = torch.where(lag > 0, float(decay) ** lag.to(r.dtype), 0.0)
    den = w.sum(dim=1)  # [S], zero only at j = 0, where V1 is 0 by definition
    v1 = torch.where(den > 0, (r @ w.T) / den.clamp(min=1e-30) * tail, 0.0)
    if mode == "v1":
        return ret - v1
    return ret - (j * v1 + (s - j) * v2) / s


def summary_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A[N, G, S, A] = r - mean over the A summaries of the same (trace, budget); with A == 1, r - mean over G."""
    # BRPO decoupled summary update (AnytimeReasoner, section 3.2): summaries share their thinking prefix.
    r = _as_float(rewards)
    _check_dims("rewards", r, 4, "[N, G, S, A]")
    dim = 3 if r.shape[3] > 1 else 1
    return r - r.mean(dim=dim, keepdim=True)


def token_advantages(segment_adv: torch.Tensor | Sequence[float], budgets: Sequence[int],
                     n_thinking_tokens: int) -> torch.Tensor:
    """adv[n]: thinking token t gets segment_adv[j] for the segment b_{j-1} < t+1 <= b_j holding it."""
    a = _as_float(segment_adv)
    if a.dim() != 1 or a.shape[0] != len(budgets):
        raise ValueError(f"segment_adv has shape {tuple(a.shape)}; expected ({len(budgets)},), one value per budget.")
    seg = segment_of_tokens(n_thinking_tokens, budgets)
    return a[torch.as_tensor(seg, dtype=torch.long, device=a.device)]


def ibpo_select(margin: np.ndarray, expensive: np.ndarray, quota: float, max_per_prompt: int | None = None,
                valid: np.ndarray | None = None) -> np.ndarray:
    """w[N, K] in {0, 1} maximising Σ w·margin s.t. Σ w·expensive <= quota·Σ w and Σ_k w[n, k] <= max_per_prompt.

    Only valid responses with positive margin are candidates: the others have their weight fixed at 0.
    Without that rule a zero- or negative-margin regular response could be selected merely to make room
    under the quota for expensive ones, and the weighted SFT step would then imitate it.
    Solved exactly with scipy.optimize.milp; ties between equal-objective selections are the solver's choice.
    """
    # IBPO ("Think Smarter not Harder", inference budget-constrained policy optimisation): the per-batch
    # optimal weights of the constrained objective are the solution of this integer linear program.
    from scipy.optimize import Bounds, LinearConstraint, milp

    if not (0.0 <= float(quota) <= 1.0):
        raise ValueError(f"quota={quota!r} is outside the accepted range [0, 1]; it is the largest expensive share.")
    m = np.asarray(margin, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"margin has shape {m.shape}; expected 2 dimensions [N prompts, K responses].")
    if not np.isfinite(m).all():
        raise ValueError("margin holds NaN or infinite values; give finite margin rewards.")
    exp = np.asarray(expensive)
    ok = np.ones_like(m, dtype=bool) if valid is None else np.asarray(valid)
    for name, x in (("expensive", exp), ("valid", ok)):
        if x.shape != m.shape or x.dtype != bool:
            raise ValueError(f"{name} has shape {x.shape} and dtype {x.dtype}; expected bool of margin's shape {m.shape}.")
    if max_per_prompt is not None and (isinstance(max_per_prompt, bool) or int(max_per_prompt) != max_per_prompt
                                       or max_per_prompt < 1):
        raise ValueError(f"max_per_prompt={max_per_prompt!r} is not accepted; give None or an int >= 1.")

    n, k = m.shape
    candidate = (ok & (m > 0)).ravel()
    if not candidate.any():
        return np.zeros((n, k), dtype=bool)
    # Expensive share: Σ (expensive_i - quota) w_i <= 0; per prompt: Σ_k w[n, k] <= max_per_prompt.
    rows = [LinearConstraint((exp.ravel().astype(np.float64) - float(quota))[None, :], -np.inf, 0.0)]
    if max_per_prompt is not None:
        rows.append(LinearConstraint(np.kron(np.eye(n), np.ones((1, k))), -np.inf, float(max_per_prompt)))
    res = milp(c=-m.ravel(), constraints=rows, integrality=np.ones(n * k),
               bounds=Bounds(np.zeros(n * k), candidate.astype(np.float64)))
    if res.x is None:  # selecting nothing is always feasible, so this means the solver itself failed
        raise RuntimeError(f"scipy.optimize.milp found no solution: {res.message}")
    return (res.x > 0.5).reshape(n, k)


ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": grpo_advantages,
    "drgrpo": drgrpo_advantages,
    "brpo": brpo_advantages,
    "brpo_summary": summary_advantages,
}
