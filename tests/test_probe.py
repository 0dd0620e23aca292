"""The RL probe: a fixed, level-balanced set of problems, answered with the same random draws each time."""

import pytest

from budgetlab.models import load_model
from budgetlab.probe import probe, probe_rows
from budgetlab.synthetic import make_synthetic

ROWS = make_synthetic(30, levels=(1, 2, 3), seed=0)


def test_probe_rows_are_fixed_balanced_over_levels_and_capped_at_the_rows_given():
    picked = probe_rows(ROWS, 9, seed=0)
    assert [r["id"] for r in picked] == [r["id"] for r in probe_rows(ROWS, 9, seed=0)]
    assert sorted(r["level"] for r in picked) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len({r["id"] for r in picked}) == 9
    assert len(probe_rows(ROWS[:4], 10)) == 4
    with pytest.raises(ValueError, match="n=0"):
        probe_rows(ROWS, 0)


def test_the_probe_draws_the_same_answers_each_time_and_leaves_the_callers_random_state_alone():
    import torch

    model, tok = load_model("tiny", adapter="lora", lora_r=4)
    torch.manual_seed(5)
    a = probe(model, tok, ROWS[:4], budgets=[3, 6], max_summary=3, samples=3, seed=1)
    after = torch.rand(1)
    torch.manual_seed(5)
    b = probe(model, tok, ROWS[:4], budgets=[3, 6], max_summary=3, samples=3, seed=1)
    assert a == b and torch.rand(1) == after
    assert set(a) == {"probe_reward", "probe_anytime", "probe_thinking", "probe_closed"}
    assert 0 <= a["probe_reward"] <= 1 and 0 <= a["probe_anytime"] <= 1 and 0 <= a["probe_thinking"] <= 6
