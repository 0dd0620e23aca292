"""The whole notebook chain on the smoke profile through papermill (slow tier; CI runs it too)."""

import json
import re

import pytest

from budgetlab import pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    pipeline.run("smoke", run_dir)
    return run_dir


def test_summary_has_the_untrained_start_and_every_method_in_the_spec_shape(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["profile"] == "smoke"
    expected = {"untrained", "warmstart", "grpo", "drgrpo", "brpo", "ibpo", "selfbudgeter"}
    assert expected <= set(summary["methods"])
    for name, m in summary["methods"].items():
        assert 0.0 <= m["anytime_score"] <= 1.0, name
        assert len(m["accuracy_by_budget"]) >= 2, name
        assert m["mean_thinking_tokens"] >= 0, name
    assert summary["precision"]["precision"] in ("fp32", "bf16") and summary["precision"]["cpu_capability"]
    assert summary["precision"]["cpu_kind"]


def test_summary_carries_the_effects_table_with_a_verdict_per_claim(smoke_run):
    # the smoke run trains every method on the testbed, so every claim and the testbed's ground truth have a row; on a tiny random
    # model most verdicts read inconclusive, and this checks the table's shape, not its outcome
    from budgetlab.stats import CLAIMS, TESTBED_CLAIMS, VERDICTS

    effects = json.loads((smoke_run / "summary.json").read_text())["effects"]
    assert [e["claim"] for e in effects] == [c.claim for c in CLAIMS + TESTBED_CLAIMS]  # smoke runs the testbed
    for e in effects:
        assert e["verdict"] in VERDICTS
        assert {"difference", "low", "high", "threshold", "direction", "n", "paper"} <= set(e)
    assert "seed papers" in (smoke_run / "report.html").read_text()


def test_every_stage_left_its_executed_notebook_and_the_report_embeds_its_figures(smoke_run):
    names = {p.stem for p in (smoke_run / "notebooks").glob("*.ipynb")}
    assert {"00_data_prep", "01_budget_sft", "03_anytime_eval", "04_report"} <= names
    assert {f"02_rl_{m}" for m in ("grpo", "drgrpo", "brpo", "ibpo", "selfbudgeter")} <= names
    pngs = list((smoke_run / "figures").glob("*.png"))
    assert len(pngs) >= 3 and all((p.with_suffix(".svg")).exists() for p in pngs)
    html = (smoke_run / "report.html").read_text()
    assert len(re.findall(r"data:image/png;base64", html)) >= 4
    assert "import budgetlab" not in html  # inputs hidden


def test_rl_metrics_have_one_row_per_step_with_the_logged_columns(smoke_run):
    import pandas as pd

    for method in ("grpo", "brpo", "ibpo", "selfbudgeter"):
        df = pd.read_csv(smoke_run / "rl" / method / "metrics.csv")
        assert list(df["step"]) == [1, 2], method
        for col in ("reward", "acc_8", "thinking_len", "step_seconds", "tokens_per_s"):
            assert col in df, (method, col)
        assert ("acc_4" in df) == (method == "brpo"), method  # ALL_BUDGETS is off in the smoke profile
        probe = pd.read_csv(smoke_run / "rl" / method / "probe.csv")  # smoke: PROBE_EVERY 1
        assert list(probe["step"]) == [0, 1, 2] and probe["probe_reward"].between(0, 1).all(), method
        assert (smoke_run / "figures" / f"probe_{method}.png").exists(), method


def test_resume_skips_finished_stages(smoke_run, capsys):
    pipeline.run("smoke", smoke_run, resume=True)
    out = capsys.readouterr().out
    assert out.count("done earlier, skipped") == len(pipeline.stage_runs(pipeline.load_params("smoke")))


def test_rl_notebook_runs_with_a_qlora_adapter(smoke_run, tmp_path):
    import papermill as pm

    # QLoRA needs a QLoRA warm start: run 01 and 02 on a 4-bit base into a copy of the smoke data
    run = tmp_path / "qlora"
    (run / "data").mkdir(parents=True)
    for f in ("train.jsonl", "eval.jsonl"):
        (run / "data" / f).write_text((smoke_run / "data" / f).read_text())
    params = {**pipeline.load_params("smoke", {"ADAPTER": "qlora"}), "RUN_DIR": str(run)}
    pipeline.run_stage("01_budget_sft", "01_budget_sft", params, run, resume=False)
    pipeline.run_stage("02_rl", "02_rl_grpo", {**params, "METHOD": "grpo"}, run, resume=False)
    assert (run / "adapters" / "grpo" / "adapter_config.json").exists()
    assert pm.inspect_notebook(str(pipeline.NOTEBOOKS / "02_rl.ipynb"))["ADAPTER"]


def test_sft_notebook_skips_selfbudgeter_phase_1_when_no_question_is_labelled(smoke_run, tmp_path):
    run = tmp_path / "no_sb"
    (run / "data").mkdir(parents=True)
    for f in ("train.jsonl", "eval.jsonl"):
        (run / "data" / f).write_text((smoke_run / "data" / f).read_text())
    params = {**pipeline.load_params("smoke", {"SB_PROBLEMS": 0, "METHODS": ["grpo"]}), "RUN_DIR": str(run)}
    pipeline.run_stage("01_budget_sft", "01_budget_sft", params, run, resume=False)
    assert (run / "data" / "selfbudgeter_labels.jsonl").read_text() == ""
    assert (run / "adapters" / "warmstart").exists() and (run / "adapters" / "selfbudgeter_sft").exists()


def test_the_can_it_fit_check_trains_on_a_few_problems_and_probes_them(smoke_run, capsys):
    import runpy
    import sys

    sys.argv = ["check_rl_learns.py", str(smoke_run), "--problems", "2", "--steps", "2", "--probe-every", "1"]
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(pipeline.PROJECT_ROOT / "scripts" / "check_rl_learns.py"), run_name="__main__")
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["problems"] == 2 and [p["step"] for p in result["probe"]] == [0, 1, 2]


def test_the_warm_start_check_answers_fresh_problems_with_each_adapter_and_checkpoint(smoke_run, capsys,
                                                                                      monkeypatch):
    import runpy
    import sys

    script = str(pipeline.PROJECT_ROOT / "scripts" / "check_warmstart.py")
    checkpoint = smoke_run / "sft" / "warmstart" / "checkpoints" / "step_000004"  # the smoke warm start's last step
    answers = smoke_run.parent / "fresh_answers.csv"
    monkeypatch.setattr(sys, "argv", ["check_warmstart.py", str(smoke_run), "--per-level", "3", "--levels", "2,3",
                                      "--checkpoint", str(checkpoint), "--out", str(answers)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by_name = {r["model"]: r for r in result["results"]}
    assert list(by_name) == ["warmstart", "selfbudgeter_sft", "warmstart/step_000004"]
    for r in by_name.values():
        assert r["n"] == 6 and set(r["accuracy_by_level"]) == {"2", "3"} and list(r["curve"]) == ["4", "8", "12"]
    assert "declared_share" in by_name["selfbudgeter_sft"] and "declared_share" not in by_name["warmstart"]
    # the warm start's own last checkpoint is the warm start: the same answers, a paired difference of exactly 0
    same = by_name["warmstart/step_000004"]["accuracy_minus_first"]
    assert same["difference"] == 0.0 and same["n"] == 6 and "accuracy_minus_first" not in by_name["warmstart"]
    import pandas as pd

    table = pd.read_csv(answers)
    assert len(table) == 3 * 6 * 3 and set(table["model"]) == set(by_name)  # 3 models x 6 problems x 3 budgets
    # an adapter the run never saved: one sentence, exit 2, before any model loads
    monkeypatch.setattr(sys, "argv", ["check_warmstart.py", str(smoke_run), "--adapters", "grpo_typo"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 2 and "grpo_typo is missing" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["check_warmstart.py", str(smoke_run), "--levels", "2,three"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 2 and "--levels='2,three' must be comma-separated" in capsys.readouterr().err


def test_the_frozen_baseline_scores_the_warm_start_on_each_steps_prompts_and_subtracts_it(smoke_run, capsys,
                                                                                          monkeypatch):
    import runpy
    import sys

    import pandas as pd

    monkeypatch.setattr(sys, "argv", ["frozen_baseline.py", str(smoke_run), "--samples", "2"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(pipeline.PROJECT_ROOT / "scripts" / "frozen_baseline.py"), run_name="__main__")
    assert done.value.code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(m["method"] for m in result["methods"]) == ["brpo", "drgrpo", "grpo", "ibpo"]  # not selfbudgeter, l1
    frozen = pd.read_csv(smoke_run / "rl" / "frozen_baseline.csv")
    grpo = pd.read_csv(smoke_run / "rl" / "grpo" / "metrics.csv")
    assert list(frozen["step"]) == list(grpo["step"]) == [1, 2]
    first = next(m for m in result["methods"] if m["method"] == "grpo")
    assert first["gain_first_half"] == pytest.approx(grpo["reward"][0] - frozen["frozen_reward"][0])
