"""Shared plumbing: where files live, validation in one sentence, atomic writes, seeding, OpenMP waiting, freed memory."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# How idle OpenMP threads wait between parallel regions; torch's libgomp reads it once, when torch loads.
# Measured on the 2-core box (LOG.md, "OpenMP waiting policy"): sleeping at once (OMP_WAIT_POLICY=PASSIVE)
# made one process's fp32 decode step 98 ms against 72-74 ms with a short spin; the short spin costs more
# only when two jobs share the cores (two decodes side by side: 195 against 134 ms a step each).
OPENMP_SPIN = "10000"


def set_openmp_wait() -> str:
    """A short spin before idle OpenMP threads sleep, for one job computing at a time (the main job, benchmarks).

    Kept as the user set it when OMP_WAIT_POLICY or GOMP_SPINCOUNT is already in the environment (the test
    suite sets PASSIVE: pytest and a notebook kernel share the cores). Call it before torch loads; the
    notebook kernels inherit it. Returns the setting in effect, for the run's log line."""
    return _unless_given(("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"), {"GOMP_SPINCOUNT": OPENMP_SPIN})


# glibc's malloc hands large freed blocks back to the kernel (each allocation over its mmap threshold is an mmap
# of its own) and takes them again, zero-filled a page at a time, on the next allocation. On the 2-core Xeon VM
# those page faults were half the system time of an evaluation: with every block under 4 GiB kept for reuse, 40
# problems x 8 budgets decoded in 12.5-13.4 s against 13.5-14.6 s, system time 2.0-2.8 s against 5.7-5.8 s, and
# with `decode.rows_of` notebook 03 took 158-161 s against 177 s; RL and SFT steps did not change (LOG.md,
# nineteenth session). glibc reads these when a process starts.
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}


def keep_freed_memory() -> str:
    """glibc's malloc keeps freed memory for reuse in the processes started after this call (the notebook kernels).

    Kept as the user set it when either variable is already in the environment. Returns the setting in effect,
    for the run's log line."""
    return _unless_given(MALLOC_KEEP, MALLOC_KEEP)


def _unless_given(keys: Iterable[str], setting: dict[str, str]) -> str:
    """`setting` into the environment unless one of `keys` is already there (the user's choice, kept); returns
    what is in effect, "KEY=value ...", for a log line."""
    for key in keys:
        if key in os.environ:
            return f"{key}={os.environ[key]}"
    os.environ.update(setting)
    return " ".join(f"{k}={v}" for k, v in setting.items())


def data_dir() -> Path:
    """The folder for generated data and the cached default model (`$BUDGETLAB_DATA` or `<repo>/data`)."""
    return Path(os.environ.get("BUDGETLAB_DATA", PROJECT_ROOT / "data"))


def check_choice(name: str, value: Any, accepted: Iterable[Any]) -> Any:
    """Return value if it is one of accepted, else raise ValueError in one sentence naming both."""
    accepted = list(accepted)
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; use one of {accepted}.")
    return value


def check_range(name: str, value: float, low: float, high: float) -> float:
    """Return value if low <= value <= high, else raise ValueError in one sentence."""
    if not (low <= value <= high):
        raise ValueError(f"{name}={value!r} is outside the accepted range [{low}, {high}].")
    return value


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to path through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """atomic_write_text of obj as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
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


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Atomically write rows as JSON lines."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines; a bad line raises ValueError naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}).") from None
    return rows


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (if installed) for a reproducible CPU run."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
