"""The RL loop data parallel over 2 CPU processes (torchrun + accelerate, gloo): ranks end identical."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_two_cpu_processes_average_gradients_and_end_with_the_same_adapter(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--standalone", "--nproc_per_node", "2",
           "-m", "budgetlab.launch", "--cpu", "--out", str(tmp_path), "--steps", "2",
           # LoRA B starts off zero and β > 0: the KL term gives each rank its own non-zero gradient
           "--beta", "0.5", "--perturb", "0.05"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # averaged gradients: the same update on both ranks
    assert ranks[0]["digest"] != ranks[0]["initial"]  # and the update was not empty
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["step"]) == [1, 2] and (metrics["world_size"] == 2).all()
    assert (metrics["kl"] > 0).all()
