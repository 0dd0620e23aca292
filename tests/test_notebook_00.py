"""Slow tier: notebooks/00_data_prep.ipynb runs end to end through papermill and writes its files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "00_data_prep.ipynb"


def test_notebook_00_is_stored_without_outputs_and_has_one_parameters_cell():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


def test_papermill_sees_every_parameter_of_notebook_00():
    import papermill as pm

    # an "=" inside a trailing comment makes papermill drop that name, and the pipeline passes only declared names
    names = list(pm.inspect_notebook(str(NOTEBOOK)))
    assert names == ["RUN_DIR", "SEED", "TASK", "DATA_PATH", "DATA_SPLIT", "N_TRAIN", "N_EVAL", "LEVELS", "EVAL_SETS",
                     "MODEL"]


@pytest.mark.slow
def test_notebook_00_writes_stratified_splits_config_table_and_figures(tmp_path):
    import papermill as pm

    run_dir = tmp_path / "run"
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "00_data_prep.ipynb"), cwd=str(REPO),
                        kernel_name="python3", progress_bar=False,
                        parameters=dict(RUN_DIR=str(run_dir), TASK="synthetic", LEVELS=[1, 2, 3, 4, 5, 6],
                                                N_TRAIN=60, N_EVAL=12, MODEL="tiny"))

    def read(name):
        return [json.loads(line) for line in (run_dir / "data" / name).read_text().splitlines()]

    train, eval_rows = read("train.jsonl"), read("eval.jsonl")
    assert (len(train), len(eval_rows)) == (60, 12)
    assert Counter(r["level"] for r in eval_rows) == {lv: 2 for lv in range(1, 7)}  # 12 eval / 6 levels
    assert Counter(r["level"] for r in train) == {lv: 10 for lv in range(1, 7)}  # 60 train / 6 levels
    config = json.loads((run_dir / "config" / "00_data_prep.json").read_text())
    assert (config["task"], config["n_train"], config["model"]) == ("synthetic", 60, "tiny")
    table = (run_dir / "data" / "level_table.csv").read_text().splitlines()
    assert table[0].startswith("level,count,target_tokens_mean") and len(table) == 7  # header + 6 levels
    for ext in ("png", "svg"):
        assert (run_dir / "figures" / f"00_target_tokens_by_level.{ext}").stat().st_size > 1000
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]  # atomic writes leave no temporaries


@pytest.mark.slow
def test_notebook_00_rejects_an_unknown_task_in_one_sentence(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="TASK='mmlu' is not accepted"):
        pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "bad.ipynb"), cwd=str(REPO), kernel_name="python3",
                            progress_bar=False, parameters=dict(RUN_DIR=str(tmp_path / "run"), TASK="mmlu"))
    assert not (tmp_path / "run" / "data").exists()  # validation runs before any work
