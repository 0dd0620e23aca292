"""Pooling a seed sweep: the runs' evaluations stack with seed-prefixed ids, every claim is recomputed on the
stack, and each row keeps the difference in each seed alone."""

import json

import pandas as pd
import pytest

from budgetlab.study import markdown, pool_runs, write_pooled
from test_stats import table

IDS = ("p1", "p2", "p3", "p4")


def make_run(path, seed, brpo_right, task="synthetic"):
    """A finished run folder: config.json and eval/anytime.csv with GRPO right on p1 only, BRPO on `brpo_right`."""
    (path / "eval").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"SEED": seed, "TASK": task}))
    grpo = table("grpo", {p: [int(p == "p1")] * 2 for p in IDS}, dict.fromkeys(IDS, 20))
    brpo = table("brpo", {p: [int(p in brpo_right)] * 2 for p in IDS}, dict.fromkeys(IDS, 20))
    pd.concat([grpo, brpo]).to_csv(path / "eval" / "anytime.csv", index=False)
    return path


def test_pooled_brpo_row_is_the_mean_over_seed_and_problem_pairs_with_each_seed_listed(tmp_path):
    # seed 0: BRPO right on p1..p4 -> +3/4 over GRPO; seed 1: on p1 only -> 0. Pooled over 8 units: 3/8
    runs = [make_run(tmp_path / "s0", 0, IDS), make_run(tmp_path / "s1", 1, ("p1",))]
    pooled = pool_runs(runs, n_resamples=999)
    (row,) = pooled["effects"]
    assert row["claim"] == "BRPO's anytime score exceeds GRPO's" and row["n"] == 8 and pooled["n_units"] == 8
    assert row["difference"] == pytest.approx(3 / 8)
    assert row["per_seed"] == {0: pytest.approx(0.75), 1: pytest.approx(0.0)}
    assert row["low"] <= 3 / 8 <= row["high"] and pooled["seeds"] == [0, 1]
    assert "| BRPO's anytime score exceeds GRPO's | +0.375 [" in markdown(pooled)


def test_write_pooled_leaves_json_and_markdown_in_the_sweep_folder(tmp_path):
    runs = [make_run(tmp_path / "s0", 0, IDS), make_run(tmp_path / "s1", 1, IDS)]
    path = write_pooled(tmp_path, runs)
    assert json.loads(path.read_text())["effects"][0]["verdict"] == "reproduced"  # +0.75 in every unit
    assert (tmp_path / "pooled.md").read_text().startswith("| claim |")


@pytest.mark.parametrize("seeds, word", [((0,), "at least 2 runs"), ((1, 1), "repeat a seed")])
def test_pooling_refuses_one_run_and_repeated_seeds(tmp_path, seeds, word):
    runs = [make_run(tmp_path / f"r{i}", s, IDS) for i, s in enumerate(seeds)]
    with pytest.raises(ValueError, match=word):
        pool_runs(runs)


def test_pooling_refuses_a_run_without_its_evaluation(tmp_path):
    runs = [make_run(tmp_path / "s0", 0, IDS), make_run(tmp_path / "s1", 1, IDS)]
    (runs[1] / "eval" / "anytime.csv").unlink()
    with pytest.raises(ValueError, match="finish their 03_anytime_eval stage first"):
        pool_runs(runs)


def test_a_sweep_pools_each_group_of_runs_that_differ_only_in_seed(tmp_path):
    from budgetlab import pipeline

    grid = pipeline.sweep_grid(["LR=0.1,0.2", "SEED=0,1"])
    runs = [make_run(tmp_path / f"r{i}", over["SEED"], IDS) for i, over in enumerate(grid)]
    written = pipeline.pool_seeds(tmp_path, grid, runs)
    assert sorted(p.parent.name for p in written) == ["pooled-lr=0.1", "pooled-lr=0.2"]
    assert json.loads(written[0].read_text())["runs"] == [str(runs[0]), str(runs[1])]


def test_the_study_profile_names_three_seeds_and_otherwise_is_the_default():
    from budgetlab.params import load_params

    study, default = load_params("study"), load_params("default")
    assert study.pop("SEEDS") == [0, 1, 2]
    assert {k: v for k, v in study.items() if k != "PROFILE"} == {k: v for k, v in default.items() if k != "PROFILE"}
