"""What the SFT and RL loops share: per-step seeds (so a resumed run replays any step), bf16 autocast for the
training forward/backward where `budgetlab.precision` chose it, and the progress bar."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def step_seed(seed: int, step: int) -> int:
    """A per-step seed, so any step can be replayed without the RNG history before it."""
    return (seed * 1_000_003 + step * 7_919) % (2**31 - 1)


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast for the training forward/backward when enabled (`precision.use_bf16` decides, SPEC §4)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def progress_bar(iterable, enabled: bool, desc: str):
    """iterable under a tqdm bar (notebook or terminal) when enabled, else as it is."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=True)


class NonFiniteLoss(FloatingPointError):
    """A training loss came out NaN or infinite: the step's optimizer update was not applied."""


def check_finite_loss(loss: float, what: str, step: int, out_dir: str | Path) -> None:
    """Stop before the optimizer step of `what` step `step` (1-based) if its loss is NaN or infinite, naming the
    step and the checkpoint a resume would continue from (the weights are still those after the previous step)."""
    if math.isfinite(loss):
        return
    from budgetlab.checkpoint import latest_checkpoint

    ck = latest_checkpoint(out_dir)
    kept = f"its last good checkpoint {ck} is kept" if ck else "no checkpoint was written yet"
    raise NonFiniteLoss(f"{what} step {step}: the loss is {loss}, so the run stops before applying it; {kept} "
                        "(lower the learning rate or check the data, then resume).")
