"""Tests for budgetlab.budgets: grid validation, priors over budgets and convenient grids."""

from __future__ import annotations

import numpy as np
import pytest

from budgetlab.budgets import PRIORS, budget_grid, prior_weights, validate_budgets


def test_validate_budgets_returns_plain_ints_for_a_good_grid():
    assert validate_budgets([16, 32, 64]) == [16, 32, 64]
    assert validate_budgets((np.int64(1), np.int64(2))) == [1, 2]
    assert all(type(b) is int for b in validate_budgets(np.array([4, 8])))


@pytest.mark.parametrize("bad, word", [
    ([], "empty"),
    ([0, 8], "not positive"),
    ([-4], "not positive"),
    ([8, 8], "not strictly increasing"),
    ([16, 8], "not strictly increasing"),
    ([8, 16.0], "not an int"),
    ([True, 2], "not an int"),
    ("16", "not a list"),
    (16, "not a list"),
])
def test_validate_budgets_rejects_bad_grids_in_one_sentence(bad, word):
    with pytest.raises(ValueError, match=word):
        validate_budgets(bad)


def test_uniform_prior_is_one_over_s():
    # S = 4 -> 1/4 each
    np.testing.assert_allclose(prior_weights("uniform", [8, 16, 32, 64]), [0.25] * 4)


def test_linear_prior_is_proportional_to_the_budget():
    # b = 10, 20, 30, 40 sum to 100 -> 0.1, 0.2, 0.3, 0.4
    np.testing.assert_allclose(prior_weights("linear", [10, 20, 30, 40]), [0.1, 0.2, 0.3, 0.4])


def test_base_prior_puts_all_mass_on_the_largest_budget():
    np.testing.assert_array_equal(prior_weights("base", [8, 16, 32]), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(prior_weights("base", [5]), [1.0])


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_every_prior_sums_to_one_and_is_non_negative(kind):
    rng = np.random.default_rng(0)
    for _ in range(20):
        grid = np.cumsum(rng.integers(1, 50, size=rng.integers(1, 10))).tolist()
        p = prior_weights(kind, grid)
        assert p.shape == (len(grid),)
        assert (p >= 0).all() and abs(p.sum() - 1.0) < 1e-12


def test_prior_weights_rejects_an_unknown_kind_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"prior='geometric'.*\['base', 'linear', 'uniform'\]"):
        prior_weights("geometric", [8, 16])


def test_prior_weights_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="not strictly increasing"):
        prior_weights("uniform", [32, 16])
    with pytest.raises(ValueError, match="empty"):
        prior_weights("linear", [])


def test_linear_grid_is_evenly_spaced_up_to_the_maximum():
    # 64 * i / 4 for i = 1..4 -> 16, 32, 48, 64
    assert budget_grid(64, 4) == [16, 32, 48, 64]
    # 10 * i / 3 = 3.33, 6.67, 10 -> rounded 3, 7, 10
    assert budget_grid(10, 3, "linear") == [3, 7, 10]


def test_geometric_grid_halves_down_from_the_maximum():
    # 64 / 2**3, 64 / 2**2, 64 / 2, 64
    assert budget_grid(64, 4, "geometric") == [8, 16, 32, 64]
    # 4 / 8 = 0.5 -> 1 (half up), 4 / 4 = 1 (duplicate, dropped), 2, 4
    assert budget_grid(4, 4, "geometric") == [1, 2, 4]


def test_small_grids_are_deduplicated_and_stay_positive():
    # 3 * i / 5 = 0.6, 1.2, 1.8, 2.4, 3 -> 1, 1, 2, 2, 3 -> [1, 2, 3]
    assert budget_grid(3, 5) == [1, 2, 3]
    assert budget_grid(1, 1) == [1]


@pytest.mark.parametrize("args, word", [
    ((0, 4), "max_budget=0"),
    ((64, 0), "n=0"),
    ((64.0, 4), "max_budget=64.0"),
    ((64, 4, "log"), "kind='log'"),
])
def test_budget_grid_rejects_bad_arguments(args, word):
    with pytest.raises(ValueError, match=word):
        budget_grid(*args)
