"""The generation copy: it computes what the trained model computes, before and after a training step."""

import pytest
import torch

from budgetlab.inference import MergedCopy
from budgetlab.models import load_model

IDS = torch.tensor([[5, 17, 200, 31, 9, 44]])


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def perturbed_lora(seed=0):
    torch.manual_seed(seed)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    with torch.no_grad():  # B starts at zero: give the adapter a real effect
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def test_an_fp32_copy_computes_the_lora_model_exactly_and_follows_a_training_step():
    model = perturbed_lora()
    copy = MergedCopy(model, dtype="float32")
    assert not any(n for n, _ in copy.model.named_modules() if "lora" in n)  # a plain model, adapter merged
    assert copy.model.lm_head.weight is copy.model.model.embed_tokens.weight  # tied like the source, though built
    # without initialisation
    torch.testing.assert_close(logits(copy.model), logits(model), rtol=1e-4, atol=1e-4)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    assert not torch.allclose(logits(copy.model), logits(model), atol=1e-4)  # stale until synced
    copy.sync()
    torch.testing.assert_close(logits(copy.model), logits(model), rtol=1e-4, atol=1e-4)


def test_a_bf16_copy_is_close_and_full_fine_tuning_copies_the_trained_weights():
    model = perturbed_lora()
    bf16 = MergedCopy(model)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert (logits(bf16.model).argmax(-1) == logits(model).argmax(-1)).float().mean() > 0.8
    full, _ = load_model("tiny", adapter="none")
    copy = MergedCopy(full, dtype="float32")
    with torch.no_grad():
        full.model.layers[0].mlp.up_proj.weight.add_(0.1)
    copy.sync()
    torch.testing.assert_close(logits(copy.model), logits(full))


def test_bad_dtype_and_quantised_models_fail_with_one_sentence():
    with pytest.raises(ValueError, match="dtype='float16'"):
        MergedCopy(perturbed_lora(), dtype="float16")
    qlora, _ = load_model("tiny", adapter="qlora", lora_r=4)
    with pytest.raises(ValueError, match="4-bit"):
        MergedCopy(qlora)
