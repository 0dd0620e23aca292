"""CUDA paths the CPU suite cannot reach: a LoRA and a QLoRA RL step on the GPU, the bf16 generation copy.
Each skips itself without CUDA (and QLoRA without bitsandbytes); scripts/gpu_check.sh runs them first."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_one_rl_step_on_the_gpu_writes_its_metrics(adapter, tmp_path):
    if adapter == "qlora":
        pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes")
    from budgetlab.models import load_model
    from budgetlab.synthetic import make_testbed
    from budgetlab.train import RLConfig, train_rl

    model, tok = load_model("tiny", adapter=adapter, lora_r=4, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    cfg = RLConfig(method="brpo", steps=1, prompts_per_step=2, generations=2, budgets=[4, 8], max_summary=4).validate()
    rows = train_rl(model, tok, make_testbed(8, seed=0), cfg, tmp_path, progress=False)
    assert len(rows) == 1 and (tmp_path / "metrics.csv").exists()


def test_the_generation_copy_matches_the_lora_model_greedily_on_the_gpu():
    from budgetlab.inference import generation_copy
    from budgetlab.models import load_model

    model, tok = load_model("tiny", adapter="lora", lora_r=4, device="cuda")
    copy = generation_copy(model, "float32")
    ids = torch.tensor([tok.encode("Question: 1+2?")], device="cuda")
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, copy.model(ids).logits, atol=1e-4)
