"""The supervised warm start: the loss falls on a fixed batch and the run leaves its metrics and checkpoint."""

import torch

from budgetlab.checkpoint import latest_checkpoint
from budgetlab.models import load_model
from budgetlab.prompts import sft_example
from budgetlab.sft import SFTConfig, sft
from budgetlab.synthetic import make_synthetic

ROWS = make_synthetic(4, levels=(1, 2), seed=0)


def test_sft_lowers_the_loss_on_a_fixed_batch(tmp_path):
    # full fine-tuning: LoRA alone barely moves a random 64-wide model whose tied output head is frozen
    torch.manual_seed(0)
    model, tok = load_model("tiny", adapter="none", lora_r=4)
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS]
    rows = sft(model, tok, examples, SFTConfig(steps=12, batch_size=4, lr=3e-3, checkpoint_every=6), tmp_path,
               progress=False)
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.9
    assert (tmp_path / "metrics.csv").exists() and latest_checkpoint(tmp_path).name == "step_000012"


def test_the_precision_setting_reaches_the_training_autocast(tmp_path, monkeypatch):
    import budgetlab.sft as sft_module

    seen, real_autocast = [], sft_module.autocast

    def recording_autocast(enabled, device):
        seen.append(enabled)
        return real_autocast(enabled, device)

    monkeypatch.setattr(sft_module, "autocast", recording_autocast)
    model, tok = load_model("tiny", adapter="lora", lora_r=4)
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS]
    for setting, bf16 in (("bf16", True), ("fp32", False)):
        seen.clear()
        sft(model, tok, examples, SFTConfig(steps=1, batch_size=2, precision=setting), tmp_path / setting,
            progress=False)
        assert seen == [bf16]


def test_an_unknown_precision_is_refused_before_any_step(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="precision='half' is not accepted"):
        sft(None, None, [object()], SFTConfig(precision="half"), tmp_path, progress=False)
