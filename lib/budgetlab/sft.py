"""The supervised warm start (SFT): fine-tune the trainable (LoRA) weights on prompt -> target examples.

Notebook 01 uses it for the common warm start every RL method begins from and for SelfBudgeter's phase 1.
Each step seeds its batch from (seed, step), so a run resumed from a checkpoint draws what the uninterrupted
run would have. When LoRA leaves the bottom layers frozen, each example's state after them is computed once
(`budgetlab.prefix`) and every step runs only the layers above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from budgetlab.checkpoint import resume_checkpoint, save_checkpoint, write_metrics
from budgetlab.loop import autocast, check_finite_loss, progress_bar, step_seed
from budgetlab.head_logprobs import plain_head
from budgetlab.losses import packed_sft_loss, token_logprobs, weighted_sft_loss
from budgetlab.packing import TrainSeq, collate, pack_examples
from budgetlab.precision import FrozenInBf16, check_precision, use_bf16
from budgetlab.prefix import frozen_depth, layer_range, prefix_states, worth_caching
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
    prefix_cache: bool = True  # the frozen bottom layers once per example (budgetlab.prefix), where worth it


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
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    rows, start = [], 0
    if resume:  # the newest checkpoint that loads; a truncated or foreign one is named and skipped
        start, rows, _ = resume_checkpoint(out_dir, model, opt)
    # the frozen base cast to bf16 once for the run, not on every pass
    frozen = FrozenInBf16(model, bf16 and start < cfg.steps)
    depth, states = frozen_depth(model) if cfg.prefix_cache else 0, None
    if depth and start < cfg.steps and worth_caching(cfg.steps * min(cfg.batch_size, len(examples)),
                                                     [len(s.ids) for s in examples],
                                                     model.get_input_embeddings().embedding_dim):
        with frozen.active(), autocast(bf16, device):  # the same values whatever step the run starts from
            states = prefix_states(model, examples, depth, tok.pad_token_id, cfg.pack_width or 256, cfg.micro_batch)
        # each example carries its states through packing into the batch's `states` (packing.collate)
        examples = [dataclasses.replace(s, states=h) for s, h in zip(examples, states)]
    decoder = plain_head(model)[0] if states is not None else None  # run above the prefix on every micro-batch
    model.train()
    consistent = True
    try:
        for step in progress_bar(range(start, cfg.steps), progress, "sft"):
            t0 = time.perf_counter()
            rng = np.random.default_rng(step_seed(cfg.seed, step))
            drawn = rng.choice(len(examples), size=min(cfg.batch_size, len(examples)), replace=False)
            batch = [examples[i] for i in drawn]
            opt.zero_grad(set_to_none=True)
            consistent = False
            total, n_tok = 0.0, 0
            for mb in range(0, len(batch), cfg.micro_batch):
                part = batch[mb:mb + cfg.micro_batch]
                rows_in = pack_examples(part, cfg.pack_width) if cfg.pack_width else part
                t = {k: v.to(device) for k, v in collate(rows_in, tok.pad_token_id).items()}
                # the rows' states after the frozen layers, and the decoder above them
                above = layer_range(decoder, depth) if "states" in t else contextlib.nullcontext()
                with frozen.active():
                    with autocast(bf16, device), above:
                        logp, _ = token_logprobs(model, t["ids"], t["attention"], mask=t["mask"],
                                                 position=t.get("position"), embeds=t.get("states"))
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
