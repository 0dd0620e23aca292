"""The supervised warm start (SFT): fine-tune the trainable (LoRA) weights on prompt -> target examples.

Notebook 01 uses it for the common warm start every RL method begins from and for SelfBudgeter's phase 1.
Each step seeds its batch from (seed, step), so a run resumed from a checkpoint draws what the uninterrupted
run would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from budgetlab.checkpoint import resume_checkpoint, save_checkpoint, write_metrics
from budgetlab.loop import autocast, check_finite_loss, progress_bar, step_seed
from budgetlab.losses import TrainSeq, collate, pack_examples, packed_sft_loss, token_logprobs, weighted_sft_loss
from budgetlab.precision import FrozenInBf16, check_precision, use_bf16
from budgetlab.tracking import Tracker


@dataclass
class SFTConfig:
    steps: int = 60  # optimizer steps
    batch_size: int = 16  # examples per step
    lr: float = 2e-4
    micro_batch: int = 16  # examples per forward/backward (memory bound)
    pack_width: int = 256  # a micro-batch's examples packed into rows of this many tokens; 0 pads each instead
    precision: str = "auto"  # auto | fp32 | bf16: autocast for forward/backward (budgetlab.precision)
    report_to: str = "none"  # none | tensorboard: every step's row also to out_dir/tensorboard (budgetlab.tracking)
    seed: int = 0
    checkpoint_every: int = 20


def sft(model, tok, examples: Sequence[TrainSeq], cfg: SFTConfig, out_dir: str | Path, *, resume: bool = False,
        progress: bool = True) -> list[dict]:
    """Supervised fine-tuning of the trainable (LoRA) weights on `examples`; returns one metrics row per step."""
    if not examples:
        raise ValueError("sft got no examples; give at least one (prompt, target) pair.")
    check_precision(cfg.precision)
    out_dir = Path(out_dir)
    tracker = Tracker(cfg.report_to, out_dir / "tensorboard")
    device = next(model.parameters()).device
    bf16 = use_bf16(cfg.precision, model)
    frozen = FrozenInBf16(model, bf16)  # the frozen base cast to bf16 once for the run, not on every pass
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    rows, start = [], 0
    if resume:  # the newest checkpoint that loads; a truncated or foreign one is named and skipped
        start, rows, _ = resume_checkpoint(out_dir, model, opt)
    model.train()
    consistent = True
    try:
        for step in progress_bar(range(start, cfg.steps), progress, "sft"):
            t0 = time.perf_counter()
            rng = np.random.default_rng(step_seed(cfg.seed, step))
            batch = [examples[i] for i in rng.choice(len(examples), size=min(cfg.batch_size, len(examples)),
                                                     replace=False)]
            opt.zero_grad(set_to_none=True)
            consistent = False
            total, n_tok = 0.0, 0
            for mb in range(0, len(batch), cfg.micro_batch):
                part = batch[mb:mb + cfg.micro_batch]
                rows_in = pack_examples(part, cfg.pack_width) if cfg.pack_width else part
                t = {k: v.to(device) for k, v in collate(rows_in, tok.pad_token_id).items()}
                with frozen.active():
                    with autocast(bf16, device):
                        logp, _ = token_logprobs(model, t["ids"], t["attention"], mask=t["mask"],
                                                 position=t.get("position"))
                    if cfg.pack_width:
                        loss = packed_sft_loss(logp, t["adv"]) / len(batch)
                    else:
                        loss = weighted_sft_loss(logp, t["mask"], t["weight"]) / len(batch)
                    loss.backward()
                total += float(loss.detach())
                n_tok += sum(len(s.ids) for s in part)
            check_finite_loss(total, "SFT", step + 1, out_dir)
            opt.step()
            dt = time.perf_counter() - t0
            rows.append({"step": step + 1, "loss": total, "step_seconds": dt, "tokens_per_s": n_tok / dt})
            tracker.log(rows[-1])
            consistent = True
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save_checkpoint(out_dir, model, opt, step + 1, rows)
                write_metrics(out_dir / "metrics.csv", rows)
    except KeyboardInterrupt:
        if consistent:
            save_checkpoint(out_dir, model, opt, len(rows), rows)
            write_metrics(out_dir / "metrics.csv", rows)
        raise
    finally:
        tracker.close()
    model.eval()
    return rows
