"""One owner per run directory: an OS file lock (`fcntl.flock`) on RUN_DIR/.lock, held while the owner lives.

The pipeline takes the lock before its first stage and exports its pid as BUDGETLAB_RUN_OWNER, so the notebook
kernels it starts (which inherit its environment) recognise the holder as their own pipeline and go on. Any
other process (a second pipeline, a notebook opened by hand, `budgetlab.launch`) is refused in one sentence
naming the holder's pid. The kernel releases a flock when its holder dies, however it dies, so a lock left by
a killed process is simply taken over, with a message naming the pid it left behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

LOCK_NAME = ".lock"
OWNER_ENV = "BUDGETLAB_RUN_OWNER"
_held: dict[str, object] = {}  # run dir -> open lock file, kept open for the life of this process


class RunDirBusy(ValueError):
    """Another live process owns the run directory."""


def claim(run_dir: str | Path) -> bool:
    """Own `run_dir` for the rest of this process (creating it); True if this process now holds the lock,
    False when the holder is the pipeline that started this process (BUDGETLAB_RUN_OWNER) or this process
    already holds it. RunDirBusy names the holder's pid otherwise."""
    run_dir = Path(run_dir).resolve()
    if str(run_dir) in _held:
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_NAME, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        if holder == os.environ.get(OWNER_ENV):
            return False
        raise RunDirBusy(f"run directory {run_dir} is in use by pid {holder}; wait for it to finish, stop it, "
                         "or pick another run directory.") from None
    f.seek(0)
    left = f.read().strip()
    if left and left != str(os.getpid()):
        print(f"[budgetlab] taking over the lock of {run_dir} left by pid {left}, which no longer runs",
              file=sys.stderr, flush=True)
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held[str(run_dir)] = f
    return True


def release(run_dir: str | Path) -> None:
    """Give up the lock (the pid is cleared, so the next owner takes it over silently); no-op if not held."""
    f = _held.pop(str(Path(run_dir).resolve()), None)
    if f is not None:
        f.truncate(0)
        f.close()
