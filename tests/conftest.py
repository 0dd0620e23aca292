"""Shared fixtures: the real benchmark files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads starve a 2-core box
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BUDGETLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder holding math500.jsonl and gsm8k_test.jsonl; skips the test when it is missing."""
    if not (SHARED_DATA / "math500.jsonl").exists():
        pytest.skip(f"real benchmark files not found in {SHARED_DATA} (set BUDGETLAB_SHARED_DATA)")
    return SHARED_DATA
