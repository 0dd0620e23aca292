"""Checkpoints written atomically: adapter weights, optimizer state, step and metrics rows.

A checkpoint is a folder `checkpoints/step_000010/` written under a temporary name and renamed, so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import torch

from budgetlab.config import atomic_dir, atomic_write_text
from budgetlab.models import trainable_state


def save_checkpoint(out_dir: str | Path, model, opt, step: int, rows: list[dict], extra: dict | None = None,
                    keep: int = 2) -> Path:
    """Write checkpoints/step_{step:06d} atomically (trainable weights, optimizer, rows); keep the newest `keep`."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    def build(tmp: Path) -> None:
        torch.save({k: v.cpu() for k, v in trainable_state(model).items()}, tmp / "trainable.pt")
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "rows": rows, **(extra or {})}, default=str))

    final = atomic_dir(root / f"step_{step:06d}", build)  # a kill mid-write leaves only a hidden temp folder
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under out_dir/checkpoints, or None."""
    done = sorted((Path(out_dir) / "checkpoints").glob("step_*"))
    return done[-1] if done else None


def load_checkpoint(path: str | Path, model, opt=None) -> tuple[int, list[dict]]:
    """Restore trainable weights (and optimizer state); returns (step, metrics rows up to that step)."""
    path = Path(path)
    state = torch.load(path / "trainable.pt", map_location="cpu")
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        raise ValueError(f"checkpoint {path} does not match this model: {len(missing)} unknown tensors, e.g. {missing[0]}.")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].device, params[k].dtype))
    if opt is not None:
        opt.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu"))
    meta = checkpoint_state(path)
    return int(meta["step"]), list(meta["rows"])


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
