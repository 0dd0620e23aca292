"""Token-level losses: PPO clipped surrogate with a selectable normaliser, KL to a reference, weighted SFT.

The sequences they score are laid out by `budgetlab.packing` (`TrainSeq`, packed rows, `collate`).
"""

from __future__ import annotations


import torch

from budgetlab.config import check_choice
from budgetlab.head_logprobs import chosen_logprobs, plain_head

NORMALISERS = ("constant", "sequence")


def token_logprobs(model, ids: torch.Tensor, attention: torch.Tensor, with_entropy: bool = False,
                   position: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   temperature: float = 1.0, embeds: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(ids[:, t] | ids[:, <t]) as [B, L] (position 0 is 0), and optionally the per-token entropy.

    `attention` is the [B, L] padding mask, or a packed batch's [B, 1, L, L] mask with its `position` ids.
    In a packed row the first token of a branch is scored against the previous packed token: such tokens
    are inserted markers and never trained. With `mask` ([B, L], the trained tokens) only those positions
    are scored (the prompt is read, never scored) and every other entry is 0. Models whose logits are a
    plain frozen head over the last hidden state go through `head_logprobs.chosen_logprobs` (no [B, L, V]
    tensor); any other model through its own logits. `temperature` scores softmax(logits / temperature), the
    distribution a sampler at that temperature drew from (the RL learner must match its rollouts). `embeds`
    ([B, L, hidden]) is the decoder's input in place of the ids' embeddings: a frozen prefix's states, with the
    decoder cut to the layers above it (`budgetlab.prefix`)."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be positive.")
    scored = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(torch.bool, copy=True)
    scored[:, 0] = False  # nothing predicts the first token
    kwargs = {"position_ids": position} if position is not None else {}
    kwargs.update({"input_ids": ids} if embeds is None else {"inputs_embeds": embeds})
    split = plain_head(model)
    if split is not None:
        decoder, weight = split
        hidden = decoder(attention_mask=attention, use_cache=False, **kwargs).last_hidden_state
        hidden = hidden[:, :-1][scored[:, 1:]]
        if temperature != 1.0:  # the head is linear without bias: W h / T = W (h / T)
            hidden = hidden / temperature
        picked, picked_ent = chosen_logprobs(hidden, weight, ids[scored], entropy=with_entropy)
    else:  # any other head: full logits, from the one predicting the first column any row scores
        first = int(scored.any(0).nonzero()[0]) if scored.any() else 1
        logits = model(attention_mask=attention, logits_to_keep=ids.shape[1] - first + 1,
                       use_cache=False, **kwargs).logits[:, :-1].float()
        keep = scored[:, first:]
        logits, targets = logits[keep], ids[:, first:][keep]
        if temperature != 1.0:
            logits = logits / temperature
        logz = torch.logsumexp(logits, dim=-1)
        picked = logits.gather(-1, targets[:, None]).squeeze(-1) - logz
        picked_ent = None
        if with_entropy:
            with torch.no_grad():
                picked_ent = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    logp = torch.zeros(ids.shape, dtype=picked.dtype, device=ids.device).masked_scatter(scored, picked)
    entropy = None
    if with_entropy:
        entropy = torch.zeros(ids.shape, dtype=picked.dtype, device=ids.device)
        entropy = entropy.masked_scatter(scored, picked_ent.detach())
    return logp, entropy


def normalise(token_loss: torch.Tensor, mask: torch.Tensor, normaliser: str, max_len: int | None,
              segment: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sequence loss: Σ_t loss·mask / max_len ("constant", Dr. GRPO) or / Σ_t mask ("sequence").

    [B] for plain rows; with `segment` [B, L] (packed rows) one value per (row, segment), flattened."""
    check_choice("normaliser", normaliser, NORMALISERS)
    if normaliser == "constant" and (not max_len or max_len <= 0):
        raise ValueError(f"max_len={max_len!r} must be a positive int for the constant normaliser.")
    if segment is None:
        total, count = (token_loss * mask).sum(-1), mask.sum(-1)
    else:
        onehot = (segment.unsqueeze(-1) == torch.arange(int(segment.max()) + 1, device=segment.device)).float()
        total = torch.einsum("bl,blk->bk", token_loss * mask, onehot).flatten()
        count = torch.einsum("bl,blk->bk", mask, onehot).flatten()
    return total / max_len if normaliser == "constant" else total / count.clamp(min=1)


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, *,
                  clip_low: float = 0.2, clip_high: float | None = None, normaliser: str = "sequence",
                  max_len: int | None = None, ref_logp: torch.Tensor | None = None,
                  beta: float = 0.0, segment: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate, summed over sequences ([B, L] inputs -> scalar sum of per-sequence losses).

    token loss = -min(ρ·A, clip(ρ, 1-ε_low, 1+ε_high)·A) + β·KL_k3(π || π_ref), ρ = exp(logp - old_logp).
    Clip-higher (DAPO) is `clip_high > clip_low`. The caller divides by the number of sequences in the step.
    `segment` marks packed rows: each branch is normalised as a sequence of its own.
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
    loss = normalise(token_loss, mask, normaliser, max_len, segment).sum()
    n = mask.sum().clamp(min=1)
    was_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))
    stats = {"clip_frac": float((was_clipped.float() * mask).sum() / n), "kl": float((kl.detach() * mask).sum() / n)}
    return loss, stats


def weighted_sft_loss(logp: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ_seq weight · (-mean_t logp over trained tokens): IBPO's weighted SFT step and plain SFT (weight 1)."""
    mask = mask.float()
    per_seq = -(logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return (weight * per_seq).sum()


def packed_sft_loss(logp: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """-Σ share · logp: `weighted_sft_loss` for rows of `pack_examples`, whose adv is each token's share."""
    return -(logp * share).sum()
