"""Pipeline parameters: profiles, overrides, sweeps and bad input, all before any model work."""

import json
import os
import subprocess
import sys

import pytest

from budgetlab import pipeline
from budgetlab.config import MALLOC_KEEP, keep_freed_memory


def test_every_profile_loads_and_validates():
    for name in ("smoke", "default", "study", "paper"):
        p = pipeline.load_params(name)
        assert p["PROFILE"] == name and p["METHODS"]


def test_override_values_are_parsed_as_yaml():
    p = pipeline.load_params("smoke", {"rl_steps": pipeline.parse_value("3"),
                                       "TRAIN_BUDGETS": pipeline.parse_value("[2, 6]")})
    assert p["RL_STEPS"] == 3 and p["TRAIN_BUDGETS"] == [2, 6]


def test_scientific_notation_is_a_number_although_yaml_1_1_reads_it_as_a_string():
    # PyYAML: yaml.safe_load("5e-4") == "5e-4"; a researcher typing -p LR=5e-4 means 0.0005
    assert pipeline.parse_value("5e-4") == 5e-4 and pipeline.parse_value("1E-3") == 1e-3
    assert pipeline.parse_value("-2.5e+1") == -25.0 and pipeline.parse_value("[1e-3, 2]") == [1e-3, 2]
    assert pipeline.parse_value("e5") == "e5" and pipeline.parse_value("1e") == "1e"  # not numbers: left alone
    assert pipeline.load_params("smoke", {"LR": pipeline.parse_value("5e-4")})["LR"] == 5e-4


@pytest.mark.parametrize("over, message", [
    ({"METHODS": ["grpo", "ppo"]}, "method='ppo'"),
    ({"TRAIN_BUDGETS": [8, 4]}, "increasing"),
    ({"EVAL_BUDGETS": [0, 4]}, "positive"),
    ({"PRIOR": "cosine"}, "cosine"),
    ({"QUOTA": 1.5}, "QUOTA=1.5"),
    ({"SB_LENGTH_WHEN_WRONG": "maybe"}, "SB_LENGTH_WHEN_WRONG='maybe'"),
    ({"ALL_BUDGETS": "yes"}, "ALL_BUDGETS='yes' must be true or false"),
    ({"SB_PROBLEMS": 0}, "SB_PROBLEMS=0 labels no questions"),
    ({"EVAL_SAMPLES": 0}, "EVAL_SAMPLES=0 must be an integer >= 1"),
    ({"RL_STEPS": "two"}, "RL_STEPS='two' must be an integer"),
    ({"PREFILL_POINTS": 0}, "PREFILL_POINTS=0"),
    ({"SB_SAMPLES": 0}, "SB_SAMPLES=0"),
    ({"PROBE_EVERY": -1}, "PROBE_EVERY=-1"),
    ({"ALPHA_END": 0}, "ALPHA_END=0 must be a positive number"),
    ({"LR": -1}, "LR=-1"),
    ({"TEMPERATURE": 0}, "TEMPERATURE=0 must be a positive number"),
    ({"BETA": -1}, "BETA=-1"),
    ({"QUOTA": "abc"}, "QUOTA='abc'"),
    ({"NORMALISER": "foo"}, "NORMALISER='foo'"),
    ({"LORA_LAYERS": 0}, "LORA_LAYERS=0"),
    ({"METHODS": ["grpo", "grpo"]}, "names a method twice"),
    ({"GENERATIONS": 1}, "GENERATIONS=1 gives"),
    ({"ADAPTER": "none"}, "ADAPTER='none'"),
    ({"REAL_DATA": "/no/such.jsonl"}, "REAL_DATA='/no/such.jsonl' does not exist"),
    ({"REAL_DATA": "org/name", "REAL_TASK": "synthetic"}, "REAL_TASK='synthetic'"),
    ({"MODEL": "./no/such/model"}, "does not exist"),
    ({"ADAPTER": "ia3"}, "ADAPTER='ia3'"),
    ({"NOT_A_KEY": 1}, "NOT_A_KEY"),
    ({"SB_REWARD": "lazy"}, "SB_REWARD='lazy' is not accepted"),
    ({"L1_ALPHA": 0}, "L1_ALPHA=0 must be null"),
    ({"SEEDS": [0]}, "SEEDS=\\[0\\] must be a list of at least 2 distinct"),
    ({"SEEDS": [1, 1]}, "SEEDS=\\[1, 1\\]"),
    ({"METHODS": ["l1"], "GENERATIONS": 1}, "GENERATIONS=1 gives \\['l1'\\]"),
])
def test_bad_parameters_fail_with_one_sentence_naming_the_value(over, message):
    with pytest.raises(ValueError, match=message):
        pipeline.load_params("smoke", over)


def test_one_generation_is_fine_for_methods_whose_advantages_do_not_need_a_group():
    assert pipeline.load_params("smoke", {"GENERATIONS": 1, "METHODS": ["brpo", "ibpo"]})["GENERATIONS"] == 1


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ValueError, match="smoke"):
        pipeline.load_params("huge")


def test_sweep_grid_is_the_cartesian_product_and_method_sets_methods():
    grid = pipeline.sweep_grid(["method=grpo,brpo", "SEED=0,1"])
    assert grid == [{"METHODS": ["grpo"], "SEED": 0}, {"METHODS": ["grpo"], "SEED": 1},
                    {"METHODS": ["brpo"], "SEED": 0}, {"METHODS": ["brpo"], "SEED": 1}]
    assert pipeline.sweep_grid(["TRAIN_BUDGETS=[4,8],[8,16]"]) == [{"TRAIN_BUDGETS": [4, 8]},
                                                                  {"TRAIN_BUDGETS": [8, 16]}]
    with pytest.raises(ValueError, match="KEY=v1,v2"):
        pipeline.sweep_grid(["method"])


def test_main_reports_bad_input_in_one_line_and_exit_code_2(capsys, tmp_path):
    code = pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "r"), "-p", "METHODS=[ppo]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ppo" in err[0]
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_freed_memory_is_kept_in_processes_started_after_and_a_users_own_setting_stays(monkeypatch):
    for key in MALLOC_KEEP:
        monkeypatch.delenv(key, raising=False)  # restored after the test
    line = keep_freed_memory()
    seen = subprocess.run([sys.executable, "-c", f"import os; print(*(os.environ.get(k) for k in {list(MALLOC_KEEP)}))"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert seen == list(MALLOC_KEEP.values()) and all(f"{k}={v}" in line for k, v in MALLOC_KEEP.items())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() == "MALLOC_TRIM_THRESHOLD_=131072" and "MALLOC_MMAP_THRESHOLD_" not in os.environ


def test_until_names_a_stage_or_fails_in_one_line(capsys, tmp_path):
    code = pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "r"), "--until", "02"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'02'" in err[0] and "02_rl" in err[0]
    assert not (tmp_path / "r").exists()


def test_until_stops_after_the_named_stage(tmp_path):
    run_dir = pipeline.run("smoke", tmp_path / "r", until="00_data_prep")
    assert sorted(p.name for p in (run_dir / "stages").iterdir()) == ["00_data_prep.done"]
    assert not (run_dir / "report.html").exists() and not (tmp_path / "index.jsonl").exists()


def test_rl_stage_runs_once_per_method():
    runs = pipeline.stage_runs({"METHODS": ["grpo", "brpo"]})
    assert [name for _, name, _ in runs] == ["00_data_prep", "01_budget_sft", "02_rl_grpo", "02_rl_brpo",
                                            "03_anytime_eval", "04_report"]


def test_notebooks_have_one_parameters_cell_and_no_outputs():
    import nbformat

    for path in sorted(pipeline.NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert nb.metadata["kernelspec"]["name"] == "python3"
        raw = json.loads(path.read_text())  # nbformat 4.5 cells need ids (nbformat fills them in with a warning)
        assert all("id" in c for c in raw["cells"]), path.name
    assert [p.stem for p in sorted(pipeline.NOTEBOOKS.glob("*.ipynb"))] == list(pipeline.STAGES)


@pytest.mark.parametrize("stage", pipeline.STAGES)
def test_papermill_reads_every_assignment_of_each_parameters_cell(stage):
    # papermill skips a line it cannot parse (an "=" inside the comment is enough), and the pipeline then never
    # passes that parameter: every NAME = ... line of the cell must come back from inspect_notebook
    import re

    import nbformat
    import papermill as pm

    path = pipeline.NOTEBOOKS / f"{stage}.ipynb"
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", cell.source, flags=re.M)
    assert list(pm.inspect_notebook(str(path))) == assigned
