"""The RL loop, readable top to bottom (the supervised warm start is `budgetlab.sft`, the update `budgetlab.update`).

RL step, in stages: sample -> score -> advantages -> update -> log -> checkpoint. Every step seeds
its own randomness from (seed, step), so a run resumed from a checkpoint samples exactly what the
uninterrupted run would have, and ends with the same metrics on CPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from budgetlab.budgets import prior_weights, validate_budgets
from budgetlab.checkpoint import checkpoint_state, resume_checkpoint, save_checkpoint, write_metrics
from budgetlab.config import check_choice, check_range
from budgetlab.grading import ANSWER_RULES
from budgetlab.inference import generation_copy
from budgetlab.loop import check_finite_loss, progress_bar, step_seed
from budgetlab.losses import NORMALISERS
from budgetlab.methods import METHODS, Step, budget_tag, expensive_default, get_method, summary_budgets
from budgetlab.models import trainable_state
from budgetlab.precision import PRECISIONS, FrozenInBf16, dtype_name, use_bf16
from budgetlab.prefix import frozen_depth
from budgetlab.probe import probe, probe_rows
from budgetlab.prompts import PROMPT_STYLES, encode_prompt
from budgetlab.rewards import alpha_schedule, correctness_reward
from budgetlab.rollout import HFRollout
from budgetlab.selfbudget import SB_REWARDS, budget_tag_prompts, selfbudgeter_rewards
from budgetlab.synthetic import short_style_share
from budgetlab.tracking import REPORT_TO, Tracker
from budgetlab.truncation import Markers
from budgetlab.update import update


@dataclass
class RLConfig:
    method: str = "grpo"  # one of METHODS
    steps: int = 20
    prompts_per_step: int = 4  # N
    generations: int = 4  # G thinking traces per prompt
    budgets: list[int] = field(default_factory=lambda: [16, 32, 48, 64])  # training budget grid (thinking tokens)
    summaries: int = 1  # A summaries per (trace, budget)
    max_summary: int = 16  # summary token cap
    temperature: float = 1.0
    lr: float = 1e-4
    epochs: int = 1  # PPO epochs per batch
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low is DAPO's clip-higher
    normaliser: str = "sequence"  # "sequence" mean or "constant" (Dr. GRPO; forced for drgrpo)
    beta: float = 0.0  # KL to the reference: the policy the run starts from (the warm start)
    prior: str = "uniform"  # BRPO thinking prior
    brpo_mode: str = "brpo"  # brpo | v1 | v2 | none
    decay: float = 0.5  # BRPO's λ
    pack: bool = True  # BRPO: pack each trace's summaries after its natural completion (same loss, less compute)
    quota: float = 0.25  # IBPO: max share of expensive responses among the selected
    expensive_threshold: int | None = None  # IBPO: thinking tokens above this are expensive (default b_S/2)
    max_per_prompt: int | None = None  # IBPO: at most this many selected per prompt
    alpha_start: float = 6.0  # SelfBudgeter tolerance schedule (paper: 6.0 -> 0.1)
    alpha_end: float = 0.1
    sb_length_when_wrong: bool = True  # SelfBudgeter: False pays the length-match term to correct answers only
    sb_reward: str = "paper"  # SelfBudgeter phase-2 reward: paper | two_sided | gated (selfbudget.SB_REWARDS)
    answer_rule: str = "last_boxed"  # the answer graded: last_boxed | seeds (grading.ANSWER_RULES)
    prompt: str = "plain"  # plain | chat: the project's prompt or the tokenizer's chat template (prompts.PROMPT_STYLES)
    l1_alpha: float | None = None  # L1 (LCPO-Max): reward per token under the target; None = 1 / largest budget
    # Summaries at every budget, logged as acc_<b>. Only BRPO trains on them (it always gets them); every other
    # method trains on the largest budget's, so by default only that one is decoded (methods.summary_budgets): 3-11%
    # of a stage's sampling in `make run` (LOG.md).
    all_budgets: bool = False
    micro_batch: int = 16
    # The update packs each micro-batch's plain sequences side by side into rows of this many tokens (no padding;
    # the same loss, packing.pack_examples); 0 pads each sequence to the batch's longest instead
    pack_width: int = 256
    # The update (PPO and IBPO's weighted SFT) holds each group's completions as branches of one row, their shared
    # prompt read once (packing.share_prompts; the same loss to rounding); False: a prompt copy per completion
    share_prompts: bool = True
    # Leave out of the update the sequences whose every trained token has advantage 0 (a group that scored alike):
    # under PPO-clip without a KL term they add exactly 0 to the loss and gradient (TrainSeq.idle; LOG.md)
    skip_idle: bool = True
    # The rollout keeps every token's state after the frozen bottom layers (LoRA on the top layers only), and the
    # update runs only the layers above them (budgetlab.prefix; the same loss to rounding, LOG.md); False: the
    # update computes them again
    reuse_states: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 (budgetlab.precision): the update's autocast, the summary decode
    # Sample with a merged copy of the policy in this dtype, synced before every step (budgetlab.inference);
    # "auto" takes the dtype `precision` resolves to; "model" samples with the training model itself (always so
    # for 4-bit QLoRA bases).
    rollout_dtype: str = "auto"
    checkpoint_every: int = 5
    report_to: str = "none"  # none | tensorboard: every step's row also to out_dir/tensorboard (budgetlab.tracking)
    probe_every: int = 0  # probe fixed problems every k steps, at the start and at the end; 0: off
    probe_size: int = 32  # problems in the probe
    probe_samples: int = 4  # answers per probe problem, at `temperature`, from the same seed each time
    seed: int = 0

    def validate(self) -> "RLConfig":
        """Check every field before any model work; one sentence per problem."""
        check_choice("method", self.method, sorted(METHODS))
        self.budgets = validate_budgets(self.budgets)
        prior_weights(self.prior, self.budgets)
        check_choice("brpo_mode", self.brpo_mode, ["brpo", "v1", "v2", "none"])
        check_choice("sb_reward", self.sb_reward, SB_REWARDS)
        check_choice("answer_rule", self.answer_rule, ANSWER_RULES)
        check_choice("prompt", self.prompt, PROMPT_STYLES)
        check_choice("normaliser", self.normaliser, NORMALISERS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("report_to", self.report_to, REPORT_TO)
        check_choice("rollout_dtype", self.rollout_dtype, ["auto", "bfloat16", "float32", "model"])
        check_range("quota", self.quota, 0.0, 1.0)
        check_range("decay", self.decay, 0.0, 1.0)
        for name in ("steps", "prompts_per_step", "generations", "summaries", "max_summary", "epochs", "micro_batch",
                     "checkpoint_every", "probe_size", "probe_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive integer.")
        for name in ("lr", "alpha_start", "alpha_end", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive.")
        if int(self.pack_width) < 0:
            raise ValueError(f"pack_width={self.pack_width!r} must be a non-negative integer (0: pad, not pack).")
        if float(self.beta) < 0:
            raise ValueError(f"beta={self.beta!r} must be 0 (no KL term) or positive.")
        if self.l1_alpha is not None and not float(self.l1_alpha) > 0:
            raise ValueError(f"l1_alpha={self.l1_alpha!r} must be positive, or None for 1 / the largest budget.")
        if not isinstance(self.sb_length_when_wrong, bool):
            raise ValueError(f"sb_length_when_wrong={self.sb_length_when_wrong!r} must be True or False.")
        if int(self.probe_every) < 0:
            raise ValueError(f"probe_every={self.probe_every!r} must be a non-negative integer (0 turns the probe off).")
        if self.method == "drgrpo":
            self.normaliser = "constant"
        if self.expensive_threshold is None:
            self.expensive_threshold = expensive_default(self.budgets)
        return self


def score(traces, rows, generations: int, rule: str = "last_boxed") -> torch.Tensor:
    """r[N, G, S, A]: correctness reward of every summary under answer `rule`; a shared summary is graded once."""
    n, s, a = len(traces) // generations, len(traces[0].summaries), len(traces[0].summaries[0])
    r = torch.zeros((n, generations, s, a))
    for idx, tr in enumerate(traces):
        cache: dict[int, float] = {}
        for j in range(s):
            for q in range(a):
                sm = tr.summaries[j][q]
                if id(sm) not in cache:
                    cache[id(sm)] = correctness_reward(sm.text, rows[idx // generations]["answer"], rule)
                r[idx // generations, idx % generations, j, q] = cache[id(sm)]
    return r


def style_share(tok, traces) -> float:
    """Mean short-style share over the traces that hold an arithmetic step (the testbed's planted choice);
    NaN when none does."""
    shares = [s for t in traces if (s := short_style_share(tok.decode(t.thinking_ids))) is not None]
    return float(np.mean(shares)) if shares else float("nan")


def step_prompts(rows: list[dict], n: int, seed: int, step: int, rank: int = 0) -> list[dict]:
    """The n rows RL step `step` (0-based) trains on: drawn without replacement from (seed, step, rank) alone, so
    every method, a resumed run and an outside check (scripts/frozen_baseline.py) see the same prompts."""
    rng = np.random.default_rng([step_seed(seed, step), rank])
    return [rows[i] for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False)]


def l1_targets(budgets: list[int], n: int, seed: int, step: int, rank: int = 0) -> list[int]:
    """L1's per-prompt targets for a step: drawn uniformly from the training budgets, from (seed, step, rank)."""
    rng = np.random.default_rng([step_seed(seed, step), rank, 1])
    return [int(b) for b in rng.choice(budgets, size=n)]


def train_rl(model, tok, rows: list[dict], cfg: RLConfig, out_dir: str | Path, *, resume: bool = False,
             allowed: dict | None = None, progress: bool = True, max_steps: int | None = None,
             accelerator=None, reference: dict | None = None) -> list[dict]:
    """Run `cfg.steps` RL steps on `rows` ({id, question, answer, level}); writes metrics.csv and checkpoints.

    `allowed` maps a row id to SelfBudgeter's allowed maximum length (warm-start correct length, inf if wrong);
    SelfBudgeter trains on those rows only, since a row phase 1 never answered has no allowed maximum.
    With `cfg.probe_every` = k > 0, a probe of `cfg.probe_size` fixed rows (`cfg.probe_samples` answers each,
    same seed each time) runs before the first step, every k steps and after the last, into probe.csv
    (budgetlab.probe).
    `max_steps` stops early after that many steps in this call (used to simulate a kill in tests).
    `accelerator` (accelerate.Accelerator) runs data parallel: each process samples its own prompts, gradients
    are averaged, the logged row is the mean over processes and the main process writes the files.
    With `cfg.beta` > 0 the KL reference is `reference` (a `models.trainable_state`), by default the weights the
    run starts from: the warm start, not the base model that disabling its adapter would give.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    main = rank == 0
    cfg.validate()
    if cfg.method == "selfbudgeter":
        if not allowed:
            raise ValueError("selfbudgeter needs `allowed` (row id -> allowed maximum length) from phase 1's labels.")
        rows = [r for r in rows if r["id"] in allowed]
    if not rows:
        raise ValueError("train_rl got no training rows; give at least one problem"
                         + (" whose id phase 1 labelled." if cfg.method == "selfbudgeter" else "."))
    out_dir = Path(out_dir)
    method = get_method(cfg.method)
    markers = Markers.from_tokenizer(tok)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    if cfg.beta > 0 and reference is None:  # taken before a resume loads a checkpoint: the warm start
        reference = trainable_state(model)
    metrics, probes, start = [], [], 0
    if resume:  # the newest checkpoint that loads; a truncated or foreign one is named and skipped
        start, metrics, ck = resume_checkpoint(out_dir, model, opt)
        probes = checkpoint_state(ck).get("probes", []) if ck else []
    bf16 = use_bf16(cfg.precision, model)
    sampler = generation_copy(model, dtype_name(bf16) if cfg.rollout_dtype == "auto" else cfg.rollout_dtype)
    frozen = FrozenInBf16(model, bf16)  # the update's frozen base, cast to bf16 once for the whole run
    rollout = HFRollout(sampler.model if sampler else model, tok, temperature=cfg.temperature, summary_bf16=bf16,
                        record_depth=frozen_depth(model) if cfg.reuse_states else 0)
    fixed = probe_rows(rows, cfg.probe_size, cfg.seed) if cfg.probe_every and main else []
    tracker = Tracker(cfg.report_to if main else "none", out_dir / "tensorboard")

    def run_probe(done: int) -> None:  # the policy after `done` steps, on the fixed rows
        if sampler is not None:
            sampler.sync()
        probes.append({"step": done, **probe(sampler.model if sampler else model, tok, fixed, cfg.budgets,
                                              cfg.max_summary, samples=cfg.probe_samples, temperature=cfg.temperature,
                                              seed=cfg.seed, budget_tag=budget_tag(cfg.method, cfg.budgets[-1]),
                                              precision="bf16" if bf16 else "fp32", answer_rule=cfg.answer_rule,
                                              prompt=cfg.prompt)})
        write_metrics(out_dir / "probe.csv", probes)

    def save(done: int) -> None:
        save_checkpoint(out_dir, model, opt, done, metrics, extra={"config": asdict(cfg), "probes": probes})

    consistent = True
    budgets = summary_budgets(cfg.method, cfg.budgets, cfg.all_budgets)
    if fixed and start == 0 and not probes:
        run_probe(0)
    try:
        for step in progress_bar(range(start, cfg.steps), progress, cfg.method):
            if max_steps is not None and step - start >= max_steps:
                break
            t0 = time.perf_counter()
            torch.manual_seed(step_seed(cfg.seed, step) + rank)
            batch = step_prompts(rows, cfg.prompts_per_step, cfg.seed, step, rank)
            # 1. sample: G thinking traces per prompt, summaries at every budget from one thinking pass
            model.eval()
            if sampler is not None:
                sampler.sync()  # the generation copy gets this step's weights
            questions = [r["question"] for r in batch for _ in range(cfg.generations)]
            extra, logs = {}, {}
            if cfg.method == "selfbudgeter":  # the model writes its budget tag; the tag is trained
                prompts, spans = budget_tag_prompts(tok, questions, rollout, style=cfg.prompt)
            elif cfg.method == "l1":  # a target per prompt, pre-filled as the tag; given, so never trained
                extra["targets"] = l1_targets(cfg.budgets, len(batch), cfg.seed, step, rank)
                prompts, _ = budget_tag_prompts(tok, questions, rollout,
                                                prefill=[t for t in extra["targets"] for _ in range(cfg.generations)],
                                                style=cfg.prompt)
                spans = None
            else:
                prompts, spans = [encode_prompt(tok, q, style=cfg.prompt) for q in questions], None
            traces = rollout.rollout(prompts, budgets, n_summaries=cfg.summaries, max_summary=cfg.max_summary,
                                     trained_prefix=spans)
            t_sample = time.perf_counter() - t0
            # 2. score
            rewards = score(traces, batch, cfg.generations, cfg.answer_rule)
            if cfg.method == "selfbudgeter":
                alpha = alpha_schedule(step, cfg.steps, cfg.alpha_start, cfg.alpha_end)
                extra["selfbudgeter_reward"], logs = selfbudgeter_rewards(tok, traces, batch, cfg.generations,
                                                                          allowed or {}, alpha,
                                                                          cfg.sb_length_when_wrong, cfg.sb_reward,
                                                                          cfg.answer_rule)
                logs["alpha"] = alpha
            # 3. advantages -> training sequences
            out = method(Step(traces, rewards, budgets, markers, cfg, extra))
            # 4. update
            consistent = False  # weights change before this step's metrics row exists
            model.train()
            with frozen.active():
                stats = update(model, opt, out.seqs, out.loss, cfg, tok.pad_token_id, accelerator, reference)
            model.eval()
            check_finite_loss(stats["loss"], "RL", step + 1, out_dir)  # NaN: update skipped, nothing saved
            # 5. log
            dt = time.perf_counter() - t0
            gen_tokens = sum(t.n_thinking + sum(len(s.ids) for s in {id(s): s for b in t.summaries for s in b}.values())
                             for t in traces)
            reward = extra.get("selfbudgeter_reward", rewards[:, :, -1, 0]).mean()
            row = {"step": step + 1, "reward": float(out.logs.pop("l1_reward", reward)),
                   **{f"acc_{b}": float(rewards[:, :, j, :].mean()) for j, b in enumerate(budgets)},
                   "thinking_len": float(np.mean([t.n_thinking for t in traces])),
                   "style_short": style_share(tok, traces),
                   "closed_frac": float(np.mean([t.closed for t in traces])),
                   **stats, **out.logs, **logs, "sample_seconds": t_sample, "step_seconds": dt,
                   "gen_tokens": gen_tokens, "tokens_per_s": (gen_tokens + stats["train_tokens"]) / dt}
            if world > 1:
                row = {k: float(accelerator.reduce(torch.tensor(float(v)), reduction="mean")) for k, v in row.items()}
                row["step"], row["world_size"] = step + 1, world
            metrics.append(row)
            tracker.log(row)
            if main:
                write_metrics(out_dir / "metrics.csv", metrics)
            if fixed and ((step + 1) % cfg.probe_every == 0 or step + 1 == cfg.steps):
                run_probe(step + 1)
            consistent = True
            # 6. checkpoint
            if main and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
                save(step + 1)
    except KeyboardInterrupt:
        if consistent and main:  # mid-update weights match no step: keep the last periodic checkpoint instead
            save(len(metrics))
        raise
    finally:
        tracker.close()
    return metrics
