"""The RL update: PPO-clip (or IBPO's weighted SFT) epochs over one step's training sequences.

`train_rl` calls `update` once per step, after the method has turned traces and rewards into `TrainSeq`s;
with several processes the gradients are averaged before every optimizer step, as DDP does. Sequences that
carry the rollout's states after the frozen layers (`TrainSeq.states`) run only the layers above them.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import torch

from budgetlab.head_logprobs import plain_head
from budgetlab.loop import autocast
from budgetlab.losses import packed_sft_loss, ppo_clip_loss, token_logprobs, weighted_sft_loss
from budgetlab.models import reference_model_ctx
from budgetlab.packing import TrainSeq, collate, pack_examples, share_prompts, with_shares
from budgetlab.precision import use_bf16
from budgetlab.prefix import frozen_depth, layer_range

if TYPE_CHECKING:
    from budgetlab.train import RLConfig


def zero_missing_grads(model) -> None:
    """A zero gradient for every trainable parameter without one: what a step that computed nothing contributes."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def average_gradients(model, accelerator) -> None:
    """Data parallel: every process ends the backward pass with the mean gradient over processes (as DDP does)."""
    zero_missing_grads(model)  # a process with nothing to train this step still joins the all-reduce
    for p in model.parameters():
        if p.requires_grad:
            p.grad = accelerator.reduce(p.grad, reduction="mean")


def update(model, opt, seqs: list[TrainSeq], loss_kind: str, cfg: RLConfig, pad_id: int,
           accelerator=None, reference: dict | None = None) -> dict[str, float]:
    """PPO-clip (or weighted SFT) over `cfg.epochs` passes; old log-probs are the sampling policy's.

    With `cfg.beta` > 0 the KL reference is `reference` (the run's starting weights), else the adapter disabled."""
    stats = {"loss": 0.0, "clip_frac": 0.0, "kl": 0.0, "entropy": 0.0, "train_tokens": sum(s.n_trained for s in seqs),
             "idle_seqs": 0}
    if not seqs and (accelerator is None or accelerator.num_processes == 1):
        return stats
    if loss_kind == "sft" and any(s.segment is not None for s in seqs):
        raise ValueError("weighted SFT takes plain sequences; packed branches are a PPO-loss layout.")
    device = next(model.parameters()).device
    bf16 = use_bf16(cfg.precision, model)
    n_seqs = sum(s.n_sequences for s in seqs)  # packed branches count as the sequences they stand for
    max_len = max([n for s in seqs for n in s.trained_per_sequence()], default=1)
    # Sequences whose loss and gradient are exactly 0 (every trained token's advantage 0, PPO-clip, no KL term)
    # still count in n_seqs and max_len, so the gradient is the same without computing them.
    work = seqs
    if cfg.skip_idle and loss_kind == "ppo" and cfg.beta == 0:
        work = [s for s in seqs if not s.idle]
        stats["idle_seqs"] = n_seqs - sum(s.n_sequences for s in work)
    if cfg.share_prompts:  # a group's prompt read once: its completions as branches (weighted SFT: as shares)
        work = share_prompts([with_shares(s) for s in work] if loss_kind == "sft" else work)
    batches = [work[i:i + cfg.micro_batch] for i in range(0, len(work), cfg.micro_batch)]
    # A micro-batch is packed side by side into rows, no padding (each sequence scored exactly as alone, branches
    # with their trunk); weighted SFT's sequences carry their shares of the loss by then.
    rows = [pack_examples(b, cfg.pack_width, shares=loss_kind == "sft" and not cfg.share_prompts)
            if cfg.pack_width and (cfg.share_prompts or all(s.segment is None for s in b)) else b for b in batches]
    tensors = [{k: v.to(device) for k, v in collate(r, pad_id).items()} for r in rows]
    n_work = max(1, sum(s.n_sequences for s in work))  # the per-batch stats are means over computed sequences

    # The PPO ratio and KL compare the distributions the rollouts were drawn from (softmax(logits / T)); the
    # weighted SFT step fits the model itself.
    temperature = cfg.temperature if loss_kind == "ppo" else 1.0

    # A row whose sequences all came with the rollout's states (after the first `depth` layers, the frozen ones)
    # runs only the layers above them, as SFT does with its cached prefix (budgetlab.prefix).
    depth = frozen_depth(model) if any("states" in t for t in tensors) else 0
    decoder = plain_head(model)[0] if depth else None

    def logprobs(t, with_entropy=False):
        embeds = t.get("states") if depth else None
        with layer_range(decoder, depth) if embeds is not None else contextlib.nullcontext():
            return token_logprobs(model, t["ids"], t["attention"], with_entropy, t.get("position"), t["mask"],
                                  temperature, embeds=embeds)

    old = ref = None
    if cfg.epochs > 1:  # with one epoch the ratio is exactly 1, so the current log-probs serve (detached)
        with torch.no_grad(), autocast(bf16, device):
            old = [logprobs(t)[0] for t in tensors]
    if cfg.beta > 0 and loss_kind == "ppo":
        with torch.no_grad(), reference_model_ctx(model, reference), autocast(bf16, device):
            ref = [logprobs(t)[0] for t in tensors]
    for epoch in range(cfg.epochs):
        opt.zero_grad(set_to_none=True)
        for b, t in enumerate(tensors):
            with autocast(bf16, device):
                logp, ent = logprobs(t, with_entropy=epoch == 0)
            if loss_kind == "sft" and "segment" in t:  # a packed row's adv is each token's share of the loss
                loss, st = packed_sft_loss(logp, t["adv"]), {}
            elif loss_kind == "sft":
                loss, st = weighted_sft_loss(logp, t["mask"], t["weight"]), {}
            else:
                old_b = old[b] if old is not None else logp.detach()
                loss, st = ppo_clip_loss(logp, old_b, t["adv"], t["mask"], clip_low=cfg.clip_low,
                                         clip_high=cfg.clip_high, normaliser=cfg.normaliser, max_len=max_len,
                                         ref_logp=ref[b] if ref is not None else None, beta=cfg.beta,
                                         segment=t.get("segment"))
            (loss / n_seqs).backward()
            w = sum(s.n_sequences for s in batches[b]) / n_work
            stats["loss"] += float(loss.detach()) / n_seqs / cfg.epochs
            for k, v in st.items():
                stats[k] += v * w / cfg.epochs
            if ent is not None:
                m = t["mask"].float()
                stats["entropy"] += float((ent * m).sum() / m.sum().clamp(min=1)) * w
        if not tensors:  # every sequence idle: AdamW still takes its step on a zero gradient, as when computed
            stats["entropy"] = float("nan")  # no token was scored, so there is no entropy to log
            zero_missing_grads(model)
        if accelerator is not None and accelerator.num_processes > 1:
            average_gradients(model, accelerator)
        grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        if not (math.isfinite(stats["loss"]) and grads_finite):  # the loop names the step (loop.check_finite_loss)
            opt.zero_grad(set_to_none=True)  # another rank's NaN reaches this one through the averaged gradient
            stats["loss"] = float("nan")
            return stats
        opt.step()
    return stats
