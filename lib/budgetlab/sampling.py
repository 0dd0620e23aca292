"""Next-token sampling for `generate` by inverse CDF: the same distribution as multinomial, 9x cheaper on CPU.

transformers samples with `torch.multinomial(softmax(scores))`, which on CPU costs about 1 ms per row over
SmolLM2's 49152-token vocabulary: 17 ms a step for 16 rows, 12% of a rollout (LOG.md). Drawing one uniform
per row and binary-searching the cumulative sum takes 1.9 ms for the same 16 rows. `generate` has no
sampler hook, so the draw is a logits processor: it returns scores that are 0 at the drawn token and -inf
elsewhere, and `generate` runs greedy (do_sample=False) and takes that token.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor, TopPLogitsWarper


class InverseCDFSampling(LogitsProcessor):
    """Draw each row's next token from softmax(scores / temperature), top-p filtered when top_p < 1."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} must be positive (0 is greedy: use do_sample=False).")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p!r} must be in (0, 1].")
        self.temperature = float(temperature)
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1 else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        uniform = torch.rand((scores.shape[0], 1), device=scores.device)
        drawn = self.draw(input_ids, scores, uniform)
        return torch.full_like(scores, -math.inf, dtype=torch.float32).scatter_(1, drawn[:, None], 0.0)

    def draw(self, input_ids: torch.Tensor, scores: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Token ids [B]: row b's draw from its distribution by `uniform` [B, 1] in [0, 1)."""
        scores = scores.float() / self.temperature
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)
        cdf = torch.softmax(scores, dim=-1).cumsum(-1)
        # u in (0, total]: the first index whose cdf reaches u has positive probability (never a -inf token)
        u = (1.0 - uniform) * cdf[:, -1:]
        return torch.searchsorted(cdf, u).clamp_(max=scores.shape[-1] - 1).squeeze(1)
