"""Models: LoRA/QLoRA train only adapters, which save atomically; bad arguments fail before any loading."""

from __future__ import annotations

import math

import pytest
import torch

from budgetlab import models
from budgetlab.model_files import build_tiny_model, resolve_model_path, tiny_model_dir
from budgetlab.models import count_trainable, load_model, reference_model_ctx, save_adapter, trainable_state

# bitsandbytes warns that its CPU gemv op has no autograd kernel; a test below checks QLoRA gradients anyway.
pytestmark = pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")

TEXTS = ["Compute 7 + 5 - 3", "Compute 1 + 2"]
# Tiny Llama (vocab 49152, hidden 64, 2 layers, intermediate 128, tied lm_head):
# 49152*64 + 2*(4*64*64 + 3*64*128 + 2*64) + 64 = 3_145_728 + 2*41_088 + 64 = 3_227_968 parameters.
TINY_PARAMS = 3_227_968
# LoRA r=4 per layer: q,k,v,o 4*(4*(64+64)) = 2048; gate,up 2*(4*(64+128)) = 1536; down 4*(128+64) = 768.
LORA_R4_PER_LAYER = 2048 + 1536 + 768


def _one_step(model, tok) -> tuple[float, dict[str, torch.Tensor], set[str]]:
    """One AdamW step on a tiny LM batch; returns (loss, weights before, names that changed)."""
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**batch)  # bitsandbytes repacks 4-bit weights for the CPU on the first forward: not a training change
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    return loss.item(), before, changed


# ---------------------------------------------------------------- the tiny model

def test_tiny_model_folder_is_small_ties_embeddings_and_holds_the_seed_0_weights():
    model, tok = load_model("tiny", adapter="none")
    assert count_trainable(model) == (TINY_PARAMS, TINY_PARAMS)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert len(tok) == model.config.vocab_size == 49152
    # The pad token's embedding row starts at zero, so the same special ids give the same weights.
    ids = {k: getattr(model.config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    fresh = build_tiny_model(seed=0, special_ids=ids).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in model.state_dict().items())
    assert resolve_model_path("tiny") == str(tiny_model_dir())


# ---------------------------------------------------------------- LoRA and QLoRA

@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_one_adamw_step_changes_only_lora_parameters(adapter):
    model, tok = load_model("tiny", adapter=adapter, lora_r=4)
    trainable, total = count_trainable(model)
    # 4-bit weights count their unpacked size, so LoRA and QLoRA report the same totals.
    assert (trainable, total) == (2 * LORA_R4_PER_LAYER, TINY_PARAMS + 2 * LORA_R4_PER_LAYER)
    loss, _, changed = _one_step(model, tok)
    assert math.isfinite(loss)
    assert changed and all(".lora_A." in n or ".lora_B." in n for n in changed)


def test_qlora_gradients_match_lora_on_the_dequantized_weights():
    import bitsandbytes as bnb

    qlora, tok = load_model("tiny", adapter="qlora", lora_r=4)
    lora, _ = load_model("tiny", adapter="lora", lora_r=4)
    params = dict(lora.named_parameters())
    torch.manual_seed(0)
    with torch.no_grad():  # before any forward: bitsandbytes repacks the 4-bit layout on the first CPU call
        for name, module in qlora.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                w = module.weight
                params[f"{name}.weight"].copy_(bnb.functional.dequantize_4bit(w.data, w.quant_state))
        for name, p in qlora.named_parameters():
            if ".lora_" in name:  # non-zero B so gradients reach every adapter matrix
                params[name].copy_(p.normal_(0.0, 0.1))
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    for model in (qlora, lora):
        model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = [(p.grad, params[n].grad) for n, p in qlora.named_parameters() if p.requires_grad]
    assert len(grads) == 28
    for q, f in grads:  # the same maths up to float rounding of the dequantized weights
        assert (q - f).norm() <= 0.02 * f.norm()


def test_qlora_quantizes_the_base_linear_layers_to_4_bit():
    import bitsandbytes as bnb

    model, _ = load_model("tiny", adapter="qlora", lora_r=4)
    base = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(base, bnb.nn.Linear4bit) and base.weight.quant_state.quant_type == "nf4"


def test_lora_layers_1_makes_only_the_top_layers_lora_weights_trainable():
    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n and ".lora_" in n for n in names)
    assert count_trainable(model)[0] == LORA_R4_PER_LAYER
    _, _, changed = _one_step(model, tok)
    assert changed <= set(names)


def test_reference_context_gives_the_base_models_logits_after_training():
    base, tok = load_model("tiny", adapter="none")
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    _one_step(model, tok)
    with torch.no_grad():
        expected = base(**batch).logits
        with reference_model_ctx(model):
            reference = model(**batch).logits
        trained = model(**batch).logits
    assert torch.allclose(reference, expected, atol=1e-6)
    assert not torch.allclose(trained, expected, atol=1e-6)
    with reference_model_ctx(base):  # no adapter: the model is its own reference
        pass


def test_reference_context_with_a_state_swaps_those_weights_in_and_restores_the_trained_ones():
    model, tok = load_model("tiny", adapter="lora", lora_r=4)
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    _one_step(model, tok)  # the "warm start"
    start = trainable_state(model)
    assert start and all("lora_" in name for name in start)  # only the adapter, not the frozen base
    with torch.no_grad():
        at_start = model(**batch).logits
    _one_step(model, tok)  # the policy moves on
    moved = trainable_state(model)
    with torch.no_grad():
        with reference_model_ctx(model, start):
            reference = model(**batch).logits
        trained = model(**batch).logits
    assert torch.equal(reference, at_start) and not torch.allclose(trained, at_start, atol=1e-6)
    with pytest.raises(RuntimeError), reference_model_ctx(model, start):
        raise RuntimeError("a failing reference pass")
    assert all(torch.equal(p, moved[n]) for n, p in model.named_parameters() if n in moved)  # restored


def test_a_saved_adapter_loads_back_trainable_with_the_same_weights(tmp_path):
    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)
    _one_step(model, tok)
    out = tmp_path / "adapters" / "warmstart"
    save_adapter(model, out)
    save_adapter(model, out)  # overwriting an existing adapter goes through the same atomic rename
    assert (out / "adapter_config.json").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["warmstart"]
    again, _ = load_model("tiny", adapter="lora", adapter_path=str(out))
    saved = {n: p for n, p in model.named_parameters() if p.requires_grad}
    loaded = {n: p for n, p in again.named_parameters() if p.requires_grad}
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[n], loaded[n]) for n in saved)


def test_a_save_that_fails_midway_leaves_no_folder_behind(tmp_path):
    class Broken:
        def save_pretrained(self, path):
            (path / "adapter_model.safetensors").write_bytes(b"half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        save_adapter(Broken(), tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input, before heavy work

@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to resolve or load a model fails the test: validation must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was resolved before the arguments were validated")

    monkeypatch.setattr(models, "resolve_model_path", forbidden)


@pytest.mark.parametrize("kwargs, named", [
    ({"adapter": "dora"}, "'dora'"),
    ({"dtype": "float16"}, "'float16'"),
    ({"device": "tpu"}, "'tpu'"),
    ({"lora_r": 0}, "lora_r=0"),
    ({"lora_layers": 0}, "lora_layers=0"),
    ({"adapter": "none", "adapter_path": "/tmp"}, "adapter_path='/tmp'"),
    ({"adapter": "lora", "adapter_path": "/no/such/adapter"}, "adapter_path='/no/such/adapter'"),
])
def test_load_model_rejects_bad_arguments_before_loading_anything(no_loading, kwargs, named):
    with pytest.raises(ValueError, match=named):
        load_model("tiny", **kwargs)


def test_lora_on_more_layers_than_the_model_has_is_rejected():
    with pytest.raises(ValueError, match="lora_layers=5 is more than the model's 2 layers"):
        load_model("tiny", adapter="lora", lora_layers=5)


def test_the_output_head_gets_contiguous_input_and_the_same_logits():
    # generate slices the last position (a strided view); the hook makes it contiguous, the result is unchanged
    model, _ = load_model("tiny")
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        last = model(input_ids=ids, logits_to_keep=1).logits
        full = model(input_ids=ids).logits
    assert seen == [True, True]
    torch.testing.assert_close(last[:, -1], full[:, -1])


def test_a_run_folder_without_the_adapter_fails_in_one_sentence_naming_the_folder(tmp_path):
    from budgetlab.models import run_adapter_dir

    with pytest.raises(ValueError, match=r"adapters/warmstart is missing: .*01_budget_sft"):
        run_adapter_dir(tmp_path)
    (tmp_path / "adapters" / "warmstart").mkdir(parents=True)  # an empty folder is a killed save, not an adapter
    with pytest.raises(ValueError, match="is missing"):
        run_adapter_dir(tmp_path)
    (tmp_path / "adapters" / "warmstart" / "adapter_config.json").write_text("{}")
    assert run_adapter_dir(tmp_path) == tmp_path / "adapters" / "warmstart"
