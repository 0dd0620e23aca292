"""Token-level losses: PPO clipped surrogate with a selectable normaliser, KL to a reference, weighted SFT.

A training example is a `TrainSeq`: token ids, a per-token advantage, and a mask of the tokens the
model generated and should learn from (inserted markers, prompts and padding are never trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from budgetlab.config import check_choice

NORMALISERS = ("constant", "sequence")


@dataclass
class TrainSeq:
    """ids[L]; adv[L] and mask[L] are aligned with ids: position t says how to train the prediction of ids[t]."""

    ids: list[int]
    adv: list[float]
    mask: list[bool]
    weight: float = 1.0  # per-sequence weight (IBPO's selection, SFT example weights)

    def __post_init__(self):
        if not (len(self.ids) == len(self.adv) == len(self.mask)):
            raise ValueError(f"TrainSeq parts differ in length: ids {len(self.ids)}, adv {len(self.adv)}, "
                             f"mask {len(self.mask)}.")

    @property
    def n_trained(self) -> int:
        return sum(self.mask)


def collate(seqs: Sequence[TrainSeq], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of TrainSeq into ids, attention, adv and mask tensors of shape [B, L]."""
    width = max(len(s.ids) for s in seqs)
    out = {"ids": torch.full((len(seqs), width), pad_id, dtype=torch.long),
           "attention": torch.zeros((len(seqs), width), dtype=torch.long),
           "adv": torch.zeros((len(seqs), width)),
           "mask": torch.zeros((len(seqs), width), dtype=torch.bool),
           "weight": torch.tensor([s.weight for s in seqs], dtype=torch.float32)}
    for i, s in enumerate(seqs):
        n = len(s.ids)
        out["ids"][i, :n] = torch.tensor(s.ids)
        out["attention"][i, :n] = 1
        out["adv"][i, :n] = torch.tensor(s.adv, dtype=torch.float32)
        out["mask"][i, :n] = torch.tensor(s.mask)
    return out


def token_logprobs(model, ids: torch.Tensor, attention: torch.Tensor,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(ids[:, t] | ids[:, <t]) as [B, L] (position 0 is 0), and optionally the per-token entropy."""
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    targets = ids[:, 1:]
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    logp = torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
            ent = logz - (probs * logits).sum(-1)
            entropy = torch.cat([torch.zeros_like(ent[:, :1]), ent], dim=1)
    return logp, entropy


def normalise(token_loss: torch.Tensor, mask: torch.Tensor, normaliser: str, max_len: int | None) -> torch.Tensor:
    """Per-sequence loss [B]: Σ_t loss·mask / max_len ("constant", Dr. GRPO) or / Σ_t mask ("sequence")."""
    check_choice("normaliser", normaliser, NORMALISERS)
    total = (token_loss * mask).sum(-1)
    if normaliser == "constant":
        if not max_len or max_len <= 0:
            raise ValueError(f"max_len={max_len!r} must be a positive int for the constant normaliser.")
        return total / max_len
    return total / mask.sum(-1).clamp(min=1)


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, *,
                  clip_low: float = 0.2, clip_high: float | None = None, normaliser: str = "sequence",
                  max_len: int | None = None, ref_logp: torch.Tensor | None = None,
                  beta: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate, summed over sequences ([B, L] inputs -> scalar sum of per-sequence losses).

    token loss = -min(ρ·A, clip(ρ, 1-ε_low, 1+ε_high)·A) + β·KL_k3(π || π_ref), ρ = exp(logp - old_logp).
    Clip-higher (DAPO) is `clip_high > clip_low`. The caller divides by the number of sequences in the step.
    """
    clip_high = clip_low if clip_high is None else clip_high
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    token_loss = -torch.minimum(ratio * adv, clipped * adv)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and beta > 0:
        # k3 estimator (Schulman): exp(ref - logp) - (ref - logp) - 1 >= 0
        diff = ref_logp - logp
        kl = torch.exp(diff) - diff - 1
        token_loss = token_loss + beta * kl
    loss = normalise(token_loss, mask, normaliser, max_len).sum()
    n = mask.sum().clamp(min=1)
    was_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))
    stats = {"clip_frac": float((was_clipped.float() * mask).sum() / n), "kl": float((kl.detach() * mask).sum() / n)}
    return loss, stats


def weighted_sft_loss(logp: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ_seq weight · (-mean_t logp over trained tokens): IBPO's weighted SFT step and plain SFT (weight 1)."""
    mask = mask.float()
    per_seq = -(logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return (weight * per_seq).sum()
