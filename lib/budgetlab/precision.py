"""The float precision every stage computes in, chosen by measuring this machine (SPEC §4).

bf16 autocast runs the matmuls faster on GPUs and on CPUs with native bf16 (AVX512-BF16, AMX). On a CPU
without it (AVX2 only) torch emulates bf16, and one SFT step of the default model took 118-131 s against
4.2-5.5 s in fp32. So the setting `auto` times one `linear` of the model's own shapes in both precisions (a
fraction of a second, once per process and shape; the fastest of interleaved runs, so a burst of load on a
shared machine does not decide it) and keeps bf16 only where it is measured at least
`SPEEDUP_NEEDED` times faster; `fp32` and `bf16` override the measurement. The choice covers the training
autocast, the dtype of the generation copy and the forced-summary decode.
"""

from __future__ import annotations

import contextlib
import functools
import time

import torch

PRECISIONS = ("auto", "fp32", "bf16")
SPEEDUP_NEEDED = 1.1  # bf16 must win by 10%: nearer than that, timing noise would decide and fp32 is exact
DEFAULT_SHAPE = (576, 1536)  # (hidden, intermediate) of the embedded SmolLM2-135M
ROWS = 512  # tokens in the timed matmul: a 16 x 32 training micro-batch
REPEATS = 9  # interleaved fp32/bf16 runs; the fastest of each counts


def check_precision(precision: str) -> str:
    """precision if it is one of PRECISIONS, else ValueError in one sentence."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not accepted; use one of {list(PRECISIONS)}.")
    return precision


def choose(fp32_seconds: float, bf16_seconds: float, speedup: float = SPEEDUP_NEEDED) -> str:
    """'bf16' when fp32_seconds / bf16_seconds >= speedup, else 'fp32' (also for non-positive timings)."""
    return "bf16" if is_faster(bf16_seconds, fp32_seconds, speedup) else "fp32"


def is_faster(seconds: float, peer_seconds: float, speedup: float = SPEEDUP_NEEDED) -> bool:
    """Whether `seconds` beats `peer_seconds` by at least `speedup` times (False for non-positive timings): the rule
    of every timed choice (the precision here, the generation copy's kernel in budgetlab.inference)."""
    return seconds > 0 and peer_seconds > 0 and peer_seconds / seconds >= speedup


def cpu_capability() -> str:
    """torch's name for this CPU's vector extension: 'AVX2', 'AVX512', ... (AMX and AVX512-BF16 show as AVX512)."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_kind() -> str:
    """This CPU's strongest matrix hardware, which `cpu_capability` does not tell apart: 'AMX' (Intel Xeon with AMX
    tiles), 'AVX512-BF16' (bf16 dot products without AMX, e.g. AMD EPYC Zen 4), else the capability itself ('AVX512',
    'AVX2', ...). The two bf16 kinds differ in speed and in the rounding of bf16 results (LOG.md: the same run
    scored differently on each), so every timing and run records it beside the capability."""
    capability = cpu_capability()
    if capability != "AVX512":  # torch's checks below are x86 ones; AMX and AVX512-BF16 come with AVX512 only
        return capability
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    return "AVX512-BF16" if torch.cpu._is_avx512_bf16_supported() else capability


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest_interleaved(fns, repeats: int = REPEATS) -> list[float]:
    """Seconds of each of `fns` (callables that finish their work before they return): one warm-up call each, then
    `repeats` rounds calling each in turn, the fastest of each kept. Interleaved and the minimum, because on a
    shared machine load would otherwise decide a choice (seen on 2 threads while another job trained: a median
    of 5 read bf16 22.8 ms, fp32 12.6 ms, and the fastest of 9 interleaved 17-21 vs 15 ms; quiet, the same shape
    reads 0.9 vs 3.8 ms)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def time_linear(hidden: int, intermediate: int, device: torch.device, repeats: int = REPEATS) -> tuple[float, float]:
    """(fp32, bf16) seconds of linear(x[ROWS, hidden], W[intermediate, hidden]) with fp32 tensors, under bf16
    autocast for the second (so the weight cast of every call is paid, as in training): `fastest_interleaved`
    on one thread, where a contended core stalls one run, not every run's thread barrier. The ratio of the two
    is the hardware's, whatever the thread count."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, hidden, generator=gen).to(device)
    w = torch.randn(intermediate, hidden, generator=gen).to(device)

    def linear(bf16: bool) -> None:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            torch.nn.functional.linear(x, w)
        _sync(x.device)

    _sync(x.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32, bf16 = fastest_interleaved([lambda: linear(False), lambda: linear(True)], repeats)
    finally:
        torch.set_num_threads(threads)
    return fp32, bf16


def _shape(hidden, intermediate) -> tuple[int, int] | None:
    """(hidden, intermediate) from a config's two sizes (intermediate 4 x hidden when it gives none); None without
    a hidden size."""
    return (int(hidden), int(intermediate or 4 * hidden)) if hidden else None


def shape_of(model=None) -> tuple[int, int]:
    """(hidden, intermediate) of a transformers/peft model's config; the embedded default's without one."""
    config = getattr(model, "config", None)
    return _shape(getattr(config, "hidden_size", None), getattr(config, "intermediate_size", None)) or DEFAULT_SHAPE


def model_shape(model: str) -> tuple[int, int] | None:
    """(hidden, intermediate) from a model folder's config.json without loading weights; None for the embedded
    default (not converted yet on a first run: its shape is DEFAULT_SHAPE) and for hub ids (offline)."""
    import json
    from pathlib import Path

    from budgetlab.model_files import resolve_model_path

    if model == "default":
        return None
    config = Path(resolve_model_path(model)) / "config.json"  # "tiny" is built here: a few MB, a second
    if not config.exists():
        return None
    c = json.loads(config.read_text())
    return _shape(c.get("hidden_size"), c.get("intermediate_size"))


@functools.lru_cache(maxsize=None)
def _measured(device_type: str, hidden: int, intermediate: int) -> tuple[float, float]:
    return time_linear(hidden, intermediate, torch.device(device_type))


def resolve(setting: str = "auto", model=None, device: str | torch.device | None = None,
            shape: tuple[int, int] | None = None) -> dict:
    """The precision to use, as a record for config.json and summary.json:
    {setting, precision ('fp32' | 'bf16'), cpu_capability, cpu_kind, device, and for `auto` the timed shape and
    ms}."""
    check_precision(setting)
    if device is None:
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
    device = torch.device(device)
    record = {"setting": setting, "precision": setting, "cpu_capability": cpu_capability(), "cpu_kind": cpu_kind(),
              "device": device.type}
    if setting == "auto":
        hidden, inter = shape or shape_of(model)
        fp32_s, bf16_s = _measured(device.type, hidden, inter)
        record.update(precision=choose(fp32_s, bf16_s), shape=[ROWS, hidden, inter],
                      fp32_ms=round(fp32_s * 1e3, 3), bf16_ms=round(bf16_s * 1e3, 3))
    return record


def use_bf16(setting: str, model=None) -> bool:
    """True when `setting` resolves to bf16 for `model` (its shapes and device)."""
    return resolve(setting, model)["precision"] == "bf16"


def dtype_name(bf16: bool) -> str:
    """The transformers dtype name of a precision: 'bfloat16' or 'float32'."""
    return "bfloat16" if bf16 else "float32"


def describe(record: dict) -> str:
    """One line for logs: 'bf16 (auto: linear 512x576x1536 bf16 0.87 ms, fp32 3.77 ms; cpu AVX512, AMX)'; the
    kind is named where it says more than the capability."""
    why = "as set"
    if record["setting"] == "auto":
        why = "auto: linear {} bf16 {} ms, fp32 {} ms".format("x".join(map(str, record["shape"])), record["bf16_ms"],
                                                               record["fp32_ms"])
    cpu = record["cpu_capability"]
    kind = record.get("cpu_kind", cpu)  # records written before cpu_kind existed have none
    return f"{record['precision']} ({why}; {record['device']} {cpu}{'' if kind == cpu else f', {kind}'})"


class FrozenInBf16:
    """bf16 copies of a model's frozen `nn.Linear` weights (and biases), swapped in while `active()`.

    Under bf16 autocast every linear casts its fp32 weight to bf16 on each call: for LoRA's frozen base that
    cast is repeated on every forward, although the weight never changes (16.5% of a bf16 SFT step before
    this class, LOG.md). Holding the cast once, here, gives autocast bf16 weights to use as they
    are. The results are the same bits, since autocast would cast to these very values; outside `active()`
    the model holds its fp32 weights again (the generation copy merges its LoRA deltas into those). A tied
    output head gets its own copy, so the embedding keeps its fp32 table. Costs half the frozen weights' fp32
    memory; `enabled=False` (fp32 runs) holds nothing and swaps nothing.

    While active, peft's LoRA layers also keep their bf16 input as it is (`peft.helpers.disable_input_dtype_casting`):
    peft casts it to the fp32 adapter weights' dtype and autocast casts it straight back to bf16, two copies
    of every LoRA layer's input forward and two more backward that give the same bits (5% of a bf16 SFT
    step, LOG.md)."""

    def __init__(self, model, enabled: bool = True):
        self.model = model if enabled else None
        self.swaps = []  # (module, {name: fp32 Parameter}, {name: bf16 Parameter})
        for mod in model.modules() if enabled else ():
            if type(mod) is not torch.nn.Linear or mod.weight.requires_grad or mod.weight.dtype != torch.float32:
                continue
            full = {n: p for n, p in (("weight", mod.weight), ("bias", mod.bias)) if p is not None}
            low = {n: torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False) for n, p in full.items()}
            self.swaps.append((mod, full, low))

    def _put(self, which: int) -> None:
        for swap in self.swaps:
            for name, p in swap[which].items():
                setattr(swap[0], name, p)

    @contextlib.contextmanager
    def active(self):
        """The bf16 copies in place, and LoRA inputs left in bf16, for the duration (use only under bf16
        autocast); the fp32 weights and peft's casting back after."""
        from peft.helpers import disable_input_dtype_casting

        self._put(2)
        try:
            with disable_input_dtype_casting(self.model, active=self.model is not None):
                yield
        finally:
            self._put(1)
