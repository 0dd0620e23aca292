"""Shared fixtures: the real benchmark files in ../shared/data (skipped when absent), logits scaled by a factor."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning OpenMP threads starve a 2-core box
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BUDGETLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder holding math500.jsonl and gsm8k_test.jsonl; skips the test when it is missing."""
    if not (SHARED_DATA / "math500.jsonl").exists():
        pytest.skip(f"real benchmark files not found in {SHARED_DATA} (set BUDGETLAB_SHARED_DATA)")
    return SHARED_DATA


@contextlib.contextmanager
def _scaled_final_norm(model, factor: float):
    norm = model.get_base_model().model.norm
    original = norm.weight.detach().clone()
    with torch.no_grad():
        norm.weight.mul_(factor)
    try:
        yield
    finally:
        with torch.no_grad():
            norm.weight.copy_(original)


@pytest.fixture
def logits_scaled():
    """`with logits_scaled(model, k):` multiplies every logit of a PEFT-wrapped Llama by k.

    The head is linear after the final norm, so scaling the norm's weight scales the logits: softmax(logits / T)
    computed without the temperature code under test."""
    return _scaled_final_norm
