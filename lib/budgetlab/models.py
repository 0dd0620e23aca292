"""Models ready to train: a base model, + LoRA, or a 4-bit NF4 base + LoRA (QLoRA), and their adapters.

`load_model` checks its arguments before any loading, resolves the name through model_files.py, puts
the model on the asked device and dtype and adds a new or a saved PEFT adapter; the adapter helpers
save it atomically, count trainable parameters, give the KL reference (the starting adapter's weights,
or the adapter disabled) and a quick chat reply. Heavy libraries (transformers, peft, bitsandbytes) are
imported inside the functions, so importing this module and validating arguments stay cheap.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from budgetlab.config import atomic_dir, check_choice
from budgetlab.model_files import load_tokenizer, resolve_model_path

ADAPTERS = ("none", "lora", "qlora")
DTYPES = ("float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
# "all-linear" in PEFT's sense for Llama-style blocks: attention and MLP projections, never lm_head.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------- device, output head, LoRA, model

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
        if not is_saved_adapter(adapter_path):
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
    return atomic_dir(Path(path), lambda tmp: model.save_pretrained(tmp))


def is_saved_adapter(path: str | os.PathLike) -> bool:
    """Whether path holds a saved PEFT adapter (its adapter_config.json; `save_adapter` writes the folder atomically)."""
    return (Path(path) / "adapter_config.json").is_file()


def run_adapter_dir(run_dir: str | os.PathLike, name: str = "warmstart") -> Path:
    """RUN_DIR/adapters/<name>, or ValueError in one sentence when that stage has not saved it."""
    path = Path(run_dir) / "adapters" / name
    if not is_saved_adapter(path):
        raise ValueError(f"{path} is missing: give a run folder whose stage saving the {name!r} adapter finished "
                         f"(01_budget_sft for the warm start).")
    return path


def load_run_model(params: dict, adapter_path: str | None = None):
    """(model, tokenizer): the run's model (params MODEL, ADAPTER, LORA_R, LORA_LAYERS), with a fresh adapter or the
    one saved at `adapter_path`."""
    return load_model(str(params["MODEL"]), adapter=params.get("ADAPTER", "lora"), lora_r=int(params["LORA_R"]),
                      lora_layers=params.get("LORA_LAYERS"), adapter_path=adapter_path)


def load_run_adapter(run_dir: str | os.PathLike, params: dict, name: str = "warmstart"):
    """(model, tokenizer): the run's model with its `name` adapter (`load_run_model`)."""
    return load_run_model(params, str(run_adapter_dir(run_dir, name)))


def count_trainable(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        quant_state = getattr(p, "quant_state", None)  # bitsandbytes packs two 4-bit values per byte
        n = int(torch.Size(quant_state.shape).numel()) if quant_state is not None else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def trainable_state(model) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable parameters (with LoRA: the adapter), e.g. the policy a run starts from."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def swapped_in(model, state: dict[str, torch.Tensor]):
    """Context in which the named parameters hold `state`'s values; the current values are back on exit."""
    params = dict(model.named_parameters())
    current = {name: params[name].detach().clone() for name in state}
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in current.items():
                params[name].copy_(value)


def reference_model_ctx(model, reference: dict[str, torch.Tensor] | None = None):
    """Context in which `model` acts as the KL reference; the trained weights are back on exit.

    With `reference` (a `trainable_state`), those weights are swapped in: an RL run that continues the warm
    start's adapter uses its starting policy as the reference, since disabling that adapter would give the
    untrained base model. Without it, the adapter is disabled (PEFT), else the model is its own reference."""
    if reference is not None:
        return swapped_in(model, reference)
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
