"""Tests for budgetlab.advantages: literal hand-worked cases, naive loop re-implementations, brute-force IBPO."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from budgetlab.advantages import (
    ADVANTAGES,
    brpo_advantages,
    drgrpo_advantages,
    grpo_advantages,
    ibpo_select,
    summary_advantages,
    token_advantages,
)
from budgetlab.budgets import prior_weights

# ---------------------------------------------------------------- naive re-implementations (SPEC §7, loops)


def naive_grpo(r: list[list[float]], scale_by_std: bool) -> list[list[float]]:
    out = []
    for row in r:
        g = len(row)
        if g == 1:
            out.append([0.0])
            continue
        mean = sum(row) / g
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / (g - 1))
        out.append([(x - mean) / (std + 1e-4) if scale_by_std else x - mean for x in row])
    return out


def naive_brpo(r: list, p: list[float], mode: str, decay: float) -> list:
    n_, g_, s_ = len(r), len(r[0]), len(p)
    ret = [[[sum(p[k] * r[n][g][k] for k in range(j, s_)) for j in range(s_)] for g in range(g_)] for n in range(n_)]
    out = [[[0.0] * s_ for _ in range(g_)] for _ in range(n_)]
    for n in range(n_):
        for g in range(g_):
            for j in range(s_):
                v2 = sum(ret[n][h][j] for h in range(g_)) / g_
                if j == 0:
                    v1 = 0.0
                else:
                    w = [decay ** (j - k) for k in range(j)]
                    v1 = sum(w[k] * r[n][g][k] for k in range(j)) / sum(w) * sum(p[k] for k in range(j, s_))
                v = {"brpo": (j * v1 + (s_ - j) * v2) / s_, "v1": v1, "v2": v2, "none": 0.0}[mode]
                out[n][g][j] = ret[n][g][j] - v
    return out


def naive_summary(r: list) -> list:
    n_, g_, s_, a_ = len(r), len(r[0]), len(r[0][0]), len(r[0][0][0])
    out = [[[[0.0] * a_ for _ in range(s_)] for _ in range(g_)] for _ in range(n_)]
    for n in range(n_):
        for g in range(g_):
            for j in range(s_):
                for a in range(a_):
                    if a_ > 1:
                        base = sum(r[n][g][j]) / a_
                    else:
                        base = sum(r[n][h][j][0] for h in range(g_)) / g_
                    out[n][g][j][a] = r[n][g][j][a] - base
    return out


def brute_force_ibpo(margin, expensive, quota, max_per_prompt=None, valid=None):
    """Best objective over every subset of the valid positive-margin responses that meets the constraints."""
    n, k = margin.shape
    valid = np.ones_like(margin, dtype=bool) if valid is None else valid
    best = 0.0
    for bits in itertools.product([0, 1], repeat=n * k):
        w = np.array(bits, dtype=bool).reshape(n, k)
        if (w & ~(valid & (margin > 0))).any():
            continue
        if feasible(w, expensive, quota, max_per_prompt):
            best = max(best, float(margin[w].sum()))
    return best


def feasible(w, expensive, quota, max_per_prompt):
    if (w & expensive).sum() > quota * w.sum() + 1e-9:
        return False
    return max_per_prompt is None or (w.sum(axis=1) <= max_per_prompt).all()


# ---------------------------------------------------------------- GRPO / Dr. GRPO


def test_grpo_advantage_of_a_literal_group():
    # r = 1, 0, 0, 1: mean 0.5, Bessel std sqrt(4 * 0.25 / 3) = 0.57735 -> ±0.5 / 0.57745 = ±0.86588
    adv = grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[0.86588, -0.86588, -0.86588, 0.86588]]), atol=1e-5, rtol=0)


def test_drgrpo_advantage_is_the_centred_reward():
    # r = 1, 0, 0: mean 1/3 -> 2/3, -1/3, -1/3 (no std division)
    expected = torch.tensor([[2 / 3, -1 / 3, -1 / 3]])
    torch.testing.assert_close(drgrpo_advantages(torch.tensor([[1.0, 0.0, 0.0]])), expected)
    torch.testing.assert_close(grpo_advantages(torch.tensor([[1.0, 0.0, 0.0]]), scale_by_std=False), expected)


def test_grpo_advantage_is_zero_when_group_has_one_sample():
    assert grpo_advantages(torch.tensor([[1.0], [0.0]])).eq(0).all()
    assert drgrpo_advantages(torch.tensor([[1.0], [0.0]])).eq(0).all()


def test_grpo_advantage_is_zero_when_every_reward_in_a_group_is_equal():
    assert grpo_advantages(torch.tensor([[1, 1, 1], [0, 0, 0]])).eq(0).all()  # int rewards become floats


@pytest.mark.parametrize("scale", [True, False])
def test_grpo_matches_a_naive_loop_on_random_rewards(scale):
    gen = torch.Generator().manual_seed(0)
    for n, g in [(1, 1), (3, 1), (2, 2), (4, 8), (5, 3)]:
        r = torch.rand(n, g, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(grpo_advantages(r, scale), torch.tensor(naive_grpo(r.tolist(), scale), dtype=torch.float64))


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(2, 3, 4)])
def test_grpo_rejects_rewards_that_are_not_two_dimensional(bad):
    with pytest.raises(ValueError, match=r"expected 2 dimensions \[N, G\]"):
        grpo_advantages(bad)


# ---------------------------------------------------------------- BRPO thinking advantages

# Hand-worked 1 x 2 x 3 case, uniform prior P = 1/3 each, decay 0.5.
# trace A: r̄ = 1, 0, 1 -> R = 2/3, 1/3, 1/3      trace B: r̄ = 0, 1, 1 -> R = 2/3, 2/3, 1/3
# V2 = 2/3, 1/2, 1/3                              Σ_{k≥j} P_k = 1, 2/3, 1/3
# V1(A) = 0, (1)·2/3 = 2/3, ((.25·1 + .5·0)/.75)·1/3 = 1/9
# V1(B) = 0, (0)·2/3 = 0,   ((.25·0 + .5·1)/.75)·1/3 = 2/9
# V = (j·V1 + (3−j)·V2)/3: A: 2/3, (2/3 + 2·1/2)/3 = 5/9, (2·1/9 + 1/3)/3 = 5/27
#                         B: 2/3, (0 + 1)/3 = 1/3,       (2·2/9 + 1/3)/3 = 7/27
# advantage R − V: A: 0, 1/3 − 5/9 = −2/9, 1/3 − 5/27 = 4/27;  B: 0, 2/3 − 1/3 = 1/3, 1/3 − 7/27 = 2/27
SCORES = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
UNIFORM3 = torch.full((3,), 1 / 3)


def test_brpo_advantage_of_the_hand_worked_case():
    expected = torch.tensor([[[0.0, -2 / 9, 4 / 27], [0.0, 1 / 3, 2 / 27]]])
    torch.testing.assert_close(brpo_advantages(SCORES, UNIFORM3), expected)


def test_brpo_ablation_modes_of_the_hand_worked_case():
    # none: R itself; v2: R − V2; v1: R − V1 (values from the comment above)
    torch.testing.assert_close(brpo_advantages(SCORES, UNIFORM3, "none"),
                               torch.tensor([[[2 / 3, 1 / 3, 1 / 3], [2 / 3, 2 / 3, 1 / 3]]]))
    torch.testing.assert_close(brpo_advantages(SCORES, UNIFORM3, "v2"),
                               torch.tensor([[[0.0, -1 / 6, 0.0], [0.0, 1 / 6, 0.0]]]))
    torch.testing.assert_close(brpo_advantages(SCORES, UNIFORM3, "v1"),
                               torch.tensor([[[2 / 3, -1 / 3, 2 / 9], [2 / 3, 2 / 3, 1 / 9]]]))


def test_brpo_with_the_base_prior_gives_every_segment_the_final_reward():
    # P = 0, 0, 1 -> R[j] = r̄[2] = 1 for both traces; V1 carries Σ_{k≥j} P_k = 1, so it is the discounted
    # mean of earlier rewards: A: V1 = 0, 1, 1/3; B: V1 = 0, 0, 2/3; V2 = 1 -> R − V at j=1: A 1 − (1+2)/3 = 0
    adv = brpo_advantages(SCORES, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(adv, torch.tensor([[[0.0, 0.0, 1 - (2 / 3 + 1) / 3], [0.0, 1 - 2 / 3, 1 - (4 / 3 + 1) / 3]]]))


@pytest.mark.parametrize("mode", ["brpo", "v1", "v2", "none"])
def test_brpo_matches_a_naive_loop_on_random_scores(mode):
    gen = torch.Generator().manual_seed(1)
    grids = [[8], [4, 8], [4, 8, 16], [2, 5, 9, 20, 33]]
    for (n, g), grid, kind, decay in itertools.product([(1, 1), (2, 1), (1, 3), (3, 4)], grids,
                                                       ["uniform", "linear", "base"], [0.5, 0.9, 1.0]):
        r = torch.rand(n, g, len(grid), generator=gen, dtype=torch.float64)
        p = torch.tensor(prior_weights(kind, grid))
        got = brpo_advantages(r, p, mode, decay)
        want = torch.tensor(naive_brpo(r.tolist(), p.tolist(), mode, decay), dtype=torch.float64)
        torch.testing.assert_close(got, want)


def test_brpo_with_one_budget_is_grpo_without_std_scaling():
    # S = 1, P = 1: R = r̄, V = V2 = mean over the group
    r = torch.tensor([[[1.0], [0.0], [0.0]]])
    torch.testing.assert_close(brpo_advantages(r, torch.tensor([1.0])), drgrpo_advantages(r[..., 0])[..., None])


def test_brpo_accepts_a_numpy_prior():
    torch.testing.assert_close(brpo_advantages(SCORES, np.full(3, 1 / 3)), brpo_advantages(SCORES, UNIFORM3))


@pytest.mark.parametrize("kwargs, word", [
    ({"mode": "ppo"}, r"mode='ppo' is not accepted; use one of \['brpo', 'v1', 'v2', 'none'\]"),
    ({"decay": 0.0}, "decay=0.0"),
    ({"decay": 1.5}, "decay=1.5"),
    ({"prior": torch.full((2,), 0.5)}, r"prior has shape \(2,\); expected \(3,\)"),
    ({"prior": torch.tensor([0.5, -0.5, 1.0])}, "negative"),
    ({"scores": torch.zeros(2, 3)}, r"scores has shape \(2, 3\)"),
])
def test_brpo_rejects_bad_mode_decay_prior_or_shape(kwargs, word):
    args = {"scores": SCORES, "prior": UNIFORM3, **kwargs}
    with pytest.raises(ValueError, match=word):
        brpo_advantages(**args)


# ---------------------------------------------------------------- summary and token advantages


def test_summary_advantage_is_relative_to_the_other_summaries_of_the_same_prefix():
    # one budget, A = 2: trace A summaries 1, 0 (mean .5) -> .5, -.5; trace B 1, 1 -> 0, 0
    r = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    torch.testing.assert_close(summary_advantages(r), torch.tensor([[[[0.5, -0.5]], [[0.0, 0.0]]]]))


def test_summary_advantage_with_one_summary_uses_the_group_mean_at_that_budget():
    # A = 1, budgets 2: trace A 1, 0; trace B 0, 0 -> group means .5, 0 -> A: .5, 0; B: -.5, 0
    r = torch.tensor([[[[1.0], [0.0]], [[0.0], [0.0]]]])
    torch.testing.assert_close(summary_advantages(r), torch.tensor([[[[0.5], [0.0]], [[-0.5], [0.0]]]]))


def test_summary_advantages_match_a_naive_loop_on_random_rewards():
    gen = torch.Generator().manual_seed(2)
    for shape in [(1, 1, 1, 1), (2, 3, 1, 1), (2, 1, 3, 1), (2, 3, 4, 1), (1, 2, 3, 2), (3, 4, 2, 5)]:
        r = torch.rand(*shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(summary_advantages(r), torch.tensor(naive_summary(r.tolist()), dtype=torch.float64))


def test_summary_advantages_reject_a_three_dimensional_table():
    with pytest.raises(ValueError, match=r"expected 4 dimensions \[N, G, S, A\]"):
        summary_advantages(torch.zeros(2, 3, 4))


def test_every_thinking_token_gets_its_segment_advantage():
    # budgets 2, 4, 6 and 5 tokens: t = 0, 1 -> seg 0; t = 2, 3 -> seg 1; t = 4 -> seg 2
    adv = token_advantages(torch.tensor([0.1, 0.2, 0.3]), [2, 4, 6], 5)
    torch.testing.assert_close(adv, torch.tensor([0.1, 0.1, 0.2, 0.2, 0.3]))
    assert token_advantages([1.0, 2.0], [2, 4], 0).shape == (0,)


def test_token_advantages_reject_mismatched_lengths_and_overlong_thinking():
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        token_advantages(torch.zeros(2), [2, 4, 6], 3)
    with pytest.raises(ValueError, match="exceeds the largest budget 6"):
        token_advantages(torch.zeros(3), [2, 4, 6], 7)


# ---------------------------------------------------------------- IBPO selection


def test_ibpo_picks_the_best_set_within_the_quota():
    # margins 1, 2, 3; expensive F, T, T; quota .5: {0, 2} has 1 expensive of 2 and objective 4 (all three:
    # 2 of 3 expensive; {1, 2}: 2 of 2; {2}: 1 of 1) -> select responses 0 and 2
    m, e = np.array([[1.0, 2.0, 3.0]]), np.array([[False, True, True]])
    np.testing.assert_array_equal(ibpo_select(m, e, 0.5), [[True, False, True]])
    np.testing.assert_array_equal(ibpo_select(m, e, 1.0), [[True, True, True]])  # no quota binds
    np.testing.assert_array_equal(ibpo_select(m, e, 0.0), [[True, False, False]])  # no expensive allowed
    np.testing.assert_array_equal(ibpo_select(m, e, 1.0, max_per_prompt=1), [[False, False, True]])


def test_ibpo_never_selects_a_non_positive_margin_even_to_make_room_under_the_quota():
    # regular response with margin -0.5 would let the expensive one (margin 1) in at quota .5, but a wrong
    # answer must not be imitated: nothing is selected
    m, e = np.array([[-0.5, 1.0]]), np.array([[False, True]])
    np.testing.assert_array_equal(ibpo_select(m, e, 0.5), [[False, False]])
    np.testing.assert_array_equal(ibpo_select(np.zeros((2, 3)), np.zeros((2, 3), bool), 0.5), np.zeros((2, 3), bool))


def test_ibpo_skips_invalid_responses():
    m, e = np.array([[1.0, 2.0]]), np.array([[False, False]])
    np.testing.assert_array_equal(ibpo_select(m, e, 0.5, valid=np.array([[True, False]])), [[True, False]])


def test_ibpo_matches_brute_force_on_tiny_instances():
    rng = np.random.default_rng(3)
    for _ in range(60):
        m = np.round(rng.normal(0.3, 1.0, size=(2, 3)), 2)
        e = rng.random((2, 3)) < 0.5
        valid = rng.random((2, 3)) < 0.85
        quota = float(rng.choice([0.0, 0.25, 1 / 3, 0.5, 0.75, 1.0]))
        cap = rng.choice([None, 1, 2])
        w = ibpo_select(m, e, quota, cap, valid)
        assert w.dtype == bool and w.shape == (2, 3)
        assert feasible(w, e, quota, cap) and not (w & ~(valid & (m > 0))).any()
        assert float(m[w].sum()) == pytest.approx(brute_force_ibpo(m, e, quota, cap, valid), abs=1e-9)


@pytest.mark.parametrize("quota", [1.5, -0.1])
def test_ibpo_rejects_a_quota_outside_zero_one_before_solving(quota):
    with pytest.raises(ValueError, match=rf"quota={quota} is outside the accepted range \[0, 1\]"):
        ibpo_select(np.ones((2, 2)), np.zeros((2, 2), bool), quota)


@pytest.mark.parametrize("kwargs, word", [
    ({"margin": np.ones(3)}, "margin has shape"),
    ({"margin": np.array([[np.nan, 1.0]])}, "NaN"),
    ({"expensive": np.zeros((1, 3), bool)}, "expensive has shape"),
    ({"expensive": np.zeros((1, 2))}, "expected bool"),
    ({"valid": np.ones((2, 2), bool)}, "valid has shape"),
    ({"max_per_prompt": 0}, "max_per_prompt=0"),
    ({"max_per_prompt": 1.5}, "max_per_prompt=1.5"),
])
def test_ibpo_rejects_mismatched_shapes_and_bad_caps(kwargs, word):
    args = {"margin": np.array([[1.0, 2.0]]), "expensive": np.array([[False, True]]), "quota": 0.5, **kwargs}
    with pytest.raises(ValueError, match=word):
        ibpo_select(**args)


def test_advantage_registry_names_the_methods():
    assert set(ADVANTAGES) == {"grpo", "drgrpo", "brpo", "brpo_summary"}
    r = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(ADVANTAGES["drgrpo"](r), grpo_advantages(r, scale_by_std=False))
