"""REPORT_TO=tensorboard writes every per-step metric of SFT and RL as offline event files; none writes nothing."""

import pytest
import torch

from budgetlab.models import load_model
from budgetlab.prompts import sft_example
from budgetlab.sft import SFTConfig, sft
from budgetlab.synthetic import make_synthetic
from budgetlab.tracking import Tracker
from budgetlab.train import RLConfig, train_rl

ROWS = make_synthetic(8, levels=(1, 2), seed=0)


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tiny():
    torch.manual_seed(0)
    return load_model("tiny", adapter="lora", lora_r=4)


def test_sft_logs_every_row_to_tensorboard(tmp_path):
    model, tok = tiny()
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS]
    rows = sft(model, tok, examples, SFTConfig(steps=3, batch_size=4, precision="fp32", report_to="tensorboard"),
               tmp_path, progress=False)
    got = scalars(tmp_path / "tensorboard")
    assert [s for s, _ in got["loss"]] == [1, 2, 3]
    assert [v for _, v in got["loss"]] == pytest.approx([r["loss"] for r in rows])


def test_rl_logs_every_numeric_metric_of_every_step(tmp_path):
    model, tok = tiny()
    cfg = RLConfig(method="grpo", steps=2, prompts_per_step=2, generations=2, budgets=[3, 6], max_summary=4,
                   precision="fp32", report_to="tensorboard")
    metrics = train_rl(model, tok, ROWS, cfg, tmp_path, progress=False)
    got = scalars(tmp_path / "tensorboard")
    for key in ("reward", "acc_6", "thinking_len", "step_seconds", "tokens_per_s"):
        assert [s for s, _ in got[key]] == [1, 2], key
    assert [v for _, v in got["reward"]] == pytest.approx([m["reward"] for m in metrics])


def test_report_to_none_writes_nothing_and_unknown_trackers_are_refused(tmp_path):
    model, tok = tiny()
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS]
    sft(model, tok, examples, SFTConfig(steps=1, batch_size=4, precision="fp32"), tmp_path, progress=False)
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(ValueError, match="report_to='wandb' is not accepted; use one of \\['none', 'tensorboard'\\]"):
        Tracker("wandb", tmp_path)
