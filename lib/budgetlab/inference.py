"""A generation copy of a model being trained: adapter merged into the base weights in the run's precision, synced.

This is what RL systems do with an inference engine (vLLM and friends): sample with a separate, merged,
lower-precision copy of the policy and copy the trained weights into it before each rollout. On the
2-core CPU a plain bf16 SmolLM2-135M decodes 16 rows ~1.8x faster than the fp32 base with unmerged
LoRA layers (LOG.md). The learner keeps its fp32 LoRA weights; the log-probabilities it trains on are
recomputed by the learner, so the copy only decides which tokens are sampled.

QLoRA bases (4-bit weights) are not copied: merging into quantised weights is lossy; sample with the
training model there.

A copy on a CPU computes its linear layers with oneDNN from pre-packed weights where that is measured
faster at its dtype (`onednn_is_faster`). fp32: on a 2-core AVX2 CPU (AMD EPYC, no native bf16) torch's default
kernel (MKL) ran the MLP and output-head linears at a rollout's 24 rows at 34-77 GFLOP/s and the packed oneDNN
kernel at 84-122 (the small key/value projections 63 -> 54; all are packed, for simplicity), and one 24-row RL
rollout took 15.5 s instead of 23.2 s with the same greedy tokens (LOG.md, eighth session). bf16: torch's own
bf16 linear runs on oneDNN too, but hands its matmul the weight in the plain layout (ONEDNN_VERBOSE: `ba`), which
the kernel re-blocks inside every call; packed once (`AB16b32a2b` for AMX), the same linears at 24 rows took
0.50-0.80 of the time on an AVX512 Xeon with AMX, and a 24-row rollout 0.87 (LOG.md, twentieth session). The packed op is the one torch's inductor uses for its CPU weight prepacking.
"""

from __future__ import annotations

import functools

import torch

from budgetlab.models import contiguous_output_head
from budgetlab.precision import fastest_interleaved, is_faster, shape_of

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
KERNELS = ("auto", "onednn", "default")
ROLLOUT_ROWS = 24  # rows of a decode step in the main job's RL (6 prompts x 4 traces): the packing's shape hint


class PackedLinear(torch.nn.Module):
    """A frozen `nn.Linear` computed by oneDNN from a pre-packed copy of its weight (inference only).

    `linear` stays the owner of the weight (`.weight`, and the state dict under `linear.`); `repack()` after the
    weight changes."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear
        self.repack()

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.linear.weight

    def repack(self) -> None:
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.linear.weight.detach(), ROLLOUT_ROWS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous: `generate` hands the output head a strided last-position slice (models.contiguous_output_head)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.linear.bias, "none", [], "")


@functools.lru_cache(maxsize=None)
def onednn_is_faster(hidden: int, intermediate: int, rows: int = ROLLOUT_ROWS,
                     dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's packed linear beats torch's default at a decode step's shape and `dtype` on this CPU (timed
    once per process, shape and dtype, interleaved, the fastest of each; False where oneDNN is missing or fails)."""
    if not torch.backends.mkldnn.is_available():
        return False
    close = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}  # bf16 rounding
    try:  # fork_rng: the timing's random tensors must not move the caller's draws (and only the first call makes them)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            lin = torch.nn.Linear(hidden, intermediate, bias=False, dtype=dtype)
            x = torch.randn(rows, hidden, dtype=dtype)
            packed = PackedLinear(lin)
            torch.testing.assert_close(packed(x), lin(x), **close)
            default, onednn = fastest_interleaved([lambda: lin(x), lambda: packed(x)], repeats=21)
    except (RuntimeError, AssertionError):
        return False
    return is_faster(onednn, default)  # budgetlab.precision's rule: at least 1.1x


def onednn_has_bf16() -> bool:
    """Whether this torch's oneDNN has bf16 kernels for this CPU (AVX512 and up; not on an AVX2-only CPU)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def packable(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's packed linear here takes weights on a CPU: fp32, or bf16 where oneDNN has bf16 kernels."""
    return device.type == "cpu" and (dtype == torch.float32 or (dtype == torch.bfloat16 and onednn_has_bf16()))


def packing_pays(dtype: torch.dtype, device: torch.device, inner) -> bool:
    """The rule for packing a copy of `inner`: `packable`, and `onednn_is_faster` at the model's shape and `dtype`."""
    return packable(dtype, device) and onednn_is_faster(*shape_of(inner), ROLLOUT_ROWS, dtype)


def pack_linears(model) -> int:
    """Every `nn.Linear` of `model` replaced in place by a `PackedLinear`; returns how many."""
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, torch.nn.Linear)]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear(child))
    return len(swaps)


def _inner(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_quantised(model) -> bool:
    return bool(getattr(_inner(model), "is_loaded_in_4bit", False) or getattr(_inner(model), "is_loaded_in_8bit", False))


def is_packed(model) -> bool:
    """Whether `model` computes its linear layers from packed weights: a packed generation copy already."""
    return any(isinstance(m, PackedLinear) for m in model.modules())


def packed_copy(model) -> "MergedCopy | None":
    """A merged fp32 copy of `model` on packed oneDNN weights to decode with, where `onednn_is_faster` on this CPU;
    None for a bf16 or GPU model, a 4-bit base, a packed copy itself, or where torch's own fp32 kernel is as
    fast. The evaluation decodes with it: the warm start's 40-problem anytime table came out the same, row for
    row, 1.5x sooner (LOG.md, ninth session)."""
    p = next(model.parameters())
    if (p.dtype != torch.float32 or is_quantised(model)
            or is_packed(model)  # a copy already
            or not packing_pays(p.dtype, p.device, _inner(model))):
        return None
    return MergedCopy(model, "float32", "onednn")


def evaluation_decoder(model, bf16: bool = False):
    """The model an evaluation decodes with. fp32: `packed_copy(model).model` where that pays, else `model` itself.
    bf16: the copy RL samples from, `generation_copy(model, "bfloat16")` (thinking and summaries in bf16; LOG.md,
    twenty-first session), or `model` itself for a 4-bit base (its summaries then decode under autocast) and for a
    generation copy already (the RL probe decodes with the sampler's)."""
    if not bf16:
        copy = packed_copy(model)
    elif is_packed(model) or (not hasattr(model, "get_base_model")
                               and next(model.parameters()).dtype == torch.bfloat16):  # a copy already
        copy = None
    else:
        copy = generation_copy(model, "bfloat16")
    return copy.model if copy else model


def generation_copy(model, dtype: str = "bfloat16", kernel: str = "auto") -> "MergedCopy | None":
    """The copy to sample with, or None to sample with `model` itself (dtype "model", or a 4-bit base)."""
    return None if dtype == "model" or is_quantised(model) else MergedCopy(model, dtype, kernel)


class MergedCopy:
    """`self.model`: a plain transformers model holding `source`'s weights with its LoRA deltas merged in.

    `kernel` (on a CPU, fp32 or bf16 where oneDNN has bf16 kernels): "onednn" computes the linear layers from packed
    weights (`PackedLinear`), "default" with torch's own kernel, "auto" takes oneDNN where `onednn_is_faster` at
    the copy's dtype. `self.kernel` says which."""

    def __init__(self, source, dtype: str = "bfloat16", kernel: str = "auto"):
        from peft.tuners.lora import LoraLayer
        from transformers import AutoModelForCausalLM
        from transformers.initialization import no_init_weights

        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not accepted; use one of {sorted(DTYPES)}.")
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is not accepted; use one of {list(KERNELS)}.")
        if is_quantised(source):
            raise ValueError("a 4-bit (QLoRA) model cannot be merged into a generation copy without loss; "
                             "sample with the training model (rollout_dtype='model').")
        self.source = source
        inner = _inner(source)
        self._lora = {name: mod for name, mod in inner.named_modules() if isinstance(mod, LoraLayer)}
        state = {k.replace(".base_layer", ""): v for k, v in inner.state_dict().items() if ".lora_" not in k}
        with no_init_weights():  # every weight is loaded below: random initialisation would be thrown away (1.4 s)
            self.model = AutoModelForCausalLM.from_config(inner.config, dtype=DTYPES[dtype])
        self.model.tie_weights()  # skipped with the initialisation
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or {})
        if unexpected or [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]:
            raise RuntimeError(f"generation copy does not match the model: missing {missing}, unexpected {unexpected}")
        self.model.to(next(source.parameters()).device).eval().requires_grad_(False)
        contiguous_output_head(self.model)
        if kernel == "onednn" and not packable(DTYPES[dtype], self.model.device):
            raise ValueError(f"kernel='onednn' packs float32 weights on a CPU (bfloat16 ones too where oneDNN has "
                             f"bf16 kernels); this copy is {dtype} on {self.model.device.type}: use kernel='auto' "
                             f"or 'default'.")
        if kernel == "auto":
            kernel = "onednn" if packing_pays(DTYPES[dtype], self.model.device, inner) else "default"
        self.kernel = kernel
        if kernel == "onednn":
            pack_linears(self.model)
        # full fine-tuning trains base weights themselves: those are copied on every sync as well
        self._trained = [name for name, p in inner.named_parameters() if p.requires_grad and ".lora_" not in name]
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the current trained weights in: W + (B A)·scale for every LoRA layer (W alone inside peft's
        `disable_adapter()`), trained base weights as is."""
        changed = []
        for name, mod in self._lora.items():
            weight = mod.get_base_layer().weight
            delta = 0 if mod.disable_adapters else sum(mod.get_delta_weight(a) for a in mod.active_adapters
                                                       if a in mod.lora_A)
            changed.append(self.model.get_submodule(name))
            changed[-1].weight.copy_(weight + delta)
        if self._trained:
            inner = _inner(self.source)
            for name in self._trained:
                self.model.get_parameter(self._own_name(name)).copy_(inner.get_parameter(name))
            changed = list(self.model.modules())  # any weight may have moved
        for mod in changed:  # each packed layer whose weight was copied, repacked once
            if isinstance(mod, PackedLinear):
                mod.repack()

    def _own_name(self, name: str) -> str:
        """The copy's name for a source parameter: without peft's `.base_layer`, inside `PackedLinear`'s `.linear`."""
        name = name.replace(".base_layer", "")
        module, _, leaf = name.rpartition(".")
        return f"{module}.linear.{leaf}" if isinstance(self.model.get_submodule(module), PackedLinear) else name
