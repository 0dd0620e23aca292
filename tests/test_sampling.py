"""Inverse-CDF sampling draws from softmax(scores / T), top-p filtered, and never a -inf token."""

import math

import pytest
import torch

from budgetlab.sampling import InverseCDFSampling


def draw(scores: torch.Tensor, n: int, **kw) -> torch.Tensor:
    """n draws from one row of scores: the next-token counts per vocabulary entry."""
    out = InverseCDFSampling(**kw)(torch.zeros((n, 1), dtype=torch.long), scores.expand(n, -1).clone())
    assert ((out == 0).sum(-1) == 1).all() and (out.isinf().sum(-1) == scores.numel() - 1).all()
    return torch.bincount(out.argmax(-1), minlength=scores.numel()).float()


def test_draws_follow_the_tempered_softmax():
    torch.manual_seed(0)
    scores = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 200_000
    for t in (1.0, 0.5):
        freq = draw(scores, n, temperature=t) / n
        expected = torch.softmax(scores / t, -1)
        # 5 standard errors of a frequency at n = 200k is < 0.006
        torch.testing.assert_close(freq, expected, atol=0.006, rtol=0)


def test_top_p_keeps_only_the_nucleus_and_masked_tokens_are_never_drawn():
    torch.manual_seed(1)
    scores = torch.tensor([3.0, 2.0, -math.inf, 0.0, -math.inf])
    counts = draw(scores, 50_000)
    assert counts[2] == 0 and counts[4] == 0
    p = torch.softmax(scores, -1)  # [0.705, 0.259, 0, 0.035, 0]: top_p 0.9 keeps tokens 0 and 1
    counts = draw(scores, 50_000, top_p=0.9)
    assert counts[3] == 0 and counts[0] > 0 and counts[1] > 0
    assert counts[0] / counts[:2].sum() == pytest.approx(float(p[0] / p[:2].sum()), abs=0.01)


@pytest.mark.parametrize("kw, message", [(dict(temperature=0.0), "temperature=0.0"), (dict(top_p=0.0), "top_p=0.0")])
def test_bad_settings_fail_in_one_sentence(kw, message):
    with pytest.raises(ValueError, match=message):
        InverseCDFSampling(**kw)
