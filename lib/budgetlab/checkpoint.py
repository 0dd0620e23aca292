"""Checkpoints written atomically: adapter weights, optimizer state, step and metrics rows.

A checkpoint is a folder `checkpoints/step_000010/` written under a temporary name and renamed, so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from budgetlab.config import atomic_dir, atomic_write_text
from budgetlab.models import trainable_state

LOW_DISK = 64 << 20  # bytes free below which a failed write is called a full disk


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be restored into this model: truncated, foreign or incomplete."""


def save_checkpoint(out_dir: str | Path, model, opt, step: int, rows: list[dict], extra: dict | None = None,
                    keep: int = 2) -> Path:
    """Write checkpoints/step_{step:06d} atomically (trainable weights, optimizer, rows); keep the newest `keep`.

    A write that fails (a full disk, say) leaves no part of the new checkpoint and the previous ones as they
    were, and raises OSError naming the checkpoint a resume would use."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)

    def build(tmp: Path) -> None:
        save_tensors({k: v.cpu() for k, v in trainable_state(model).items()}, tmp / "trainable.pt")
        save_tensors(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "rows": rows, **(extra or {})}, default=str))

    try:
        final = atomic_dir(root / f"step_{step:06d}", build)  # a kill mid-write leaves only a hidden temp folder
    except OSError as e:
        prev = latest_checkpoint(out_dir)
        raise OSError(e.errno, f"checkpoint of step {step} could not be written under {root} ({e.strerror or e}); "
                               f"{f'{prev.name} is kept for a resume' if prev else 'no earlier checkpoint exists'}") from e
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_tensors(obj, path: Path) -> None:
    """`torch.save`, failing as OSError: torch's zip writer reports a failed write, a full disk among them, as a
    RuntimeError ("unexpected pos 3069184 vs 3069076" on a full disk, 2026-12-01), so the free space is named."""
    try:
        torch.save(obj, path)
    except RuntimeError as e:
        free = shutil.disk_usage(path.parent).free
        code = errno.ENOSPC if free < LOW_DISK else errno.EIO
        raise OSError(code, f"{os.strerror(code)}: {free >> 20} MB free, torch.save said {str(e)[:100]!r}") from e


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under out_dir/checkpoints, or None."""
    done = sorted((Path(out_dir) / "checkpoints").glob("step_*"))
    return done[-1] if done else None


def load_checkpoint(path: str | Path, model, opt=None) -> tuple[int, list[dict]]:
    """Restore trainable weights (and optimizer state); returns (step, metrics rows up to that step).

    Everything is read and checked before any weight changes: tensors load with `weights_only=True` (no
    pickled code runs), every name and shape must match this model's trainable weights, or CheckpointError
    says what is wrong and the model is left as it was."""
    path = Path(path)
    try:
        state = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
        opt_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True) if opt is not None else None
        meta = checkpoint_state(path)
        step, rows = int(meta["step"]), list(meta["rows"])
    except Exception as e:  # truncated zip, missing file, bad JSON, a pickle that is not plain tensors
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:120]}).") from None
    params = dict(model.named_parameters())
    trainable = {k for k, p in params.items() if p.requires_grad}
    if set(state) != trainable:
        odd = sorted(set(state) ^ trainable)
        raise CheckpointError(f"checkpoint {path} does not match this model: {len(odd)} tensors differ in name, "
                              f"e.g. {odd[0]}.")
    shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(params[k].shape)]
    if shapes:
        raise CheckpointError(f"checkpoint {path} does not match this model: {shapes[0]} has shape "
                              f"{tuple(state[shapes[0]].shape)}, the model's is {tuple(params[shapes[0]].shape)}.")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].device, params[k].dtype))
    if opt is not None:
        opt.load_state_dict(opt_state)
    return step, rows


def resume_checkpoint(out_dir: str | Path, model, opt=None) -> tuple[int, list[dict], Path | None]:
    """Restore the newest checkpoint under out_dir that loads, newest first: (step, rows, its folder).

    One that cannot be restored (CheckpointError) is named with the reason and the one before it is tried;
    (0, [], None) when none is left, so training starts over."""
    for ck in sorted((Path(out_dir) / "checkpoints").glob("step_*"), reverse=True):
        try:
            step, rows = load_checkpoint(ck, model, opt)
            return step, rows, ck
        except CheckpointError as e:
            print(f"[budgetlab] {e} Falling back to the checkpoint before it.", file=sys.stderr, flush=True)
    return 0, [], None


def checkpoint_state(path: str | Path) -> dict:
    """The checkpoint's state.json: step, metrics rows and whatever extra the trainer saved with them."""
    return json.loads((Path(path) / "state.json").read_text())


def write_metrics(path: str | Path, rows: list[dict]) -> Path:
    """Atomically write rows as CSV (columns = union of keys, in first-seen order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
