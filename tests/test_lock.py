"""The install does not drift: every package in requirements.lock is installed at exactly its locked version."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return pins


def test_the_lock_pins_every_line_and_leaves_torch_to_the_user():
    pins = locked()
    assert len(pins) > 100 and all(re.fullmatch(r"[\w.+!-]+", v) for v in pins.values())
    assert "torch" not in pins and "budgetlab" not in pins
    assert {"transformers", "peft", "trl", "papermill", "math-verify", "accelerate", "datasets", "scipy"} <= set(pins)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".venv" / ".installed").exists(),
                    reason="not installed by make setup (which installs the lock)")
def test_this_environment_holds_exactly_the_locked_versions():
    drift = {}
    for name, want in locked().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = None
        if have != want:
            drift[name] = (want, have)
    assert not drift, f"installed versions differ from requirements.lock (locked, installed): {drift}"
