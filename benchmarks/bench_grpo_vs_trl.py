"""Seconds per RL step: our GRPO step against TRL's GRPOTrainer at one configuration, and our BRPO step
against our GRPO step at equal thinking tokens.

Usage:
    python benchmarks/bench_grpo_vs_trl.py                      # SmolLM2-135M, 3 timed steps x 2 rounds
    python benchmarks/bench_grpo_vs_trl.py --model tiny --steps 1 --rounds 1   # smoke check (< 2 min)
    python benchmarks/bench_grpo_vs_trl.py --profile            # + cProfile of one of our GRPO steps

Runs alternate (ours GRPO, ours GRPO with fp32 rollouts, TRL, ours BRPO; reversed every other round) so
a noisy, shared machine slows all of them alike; each run loads a fresh model and skips `--warmup`
steps. The last stdout line is one JSON object: ours_s_per_step, trl_s_per_step, ratio (ours / TRL),
brpo_s_per_step, grpo_s_per_step, ratio_brpo_over_grpo, tokens per step and the configuration. The ceiling,
measured in the same run: a bare batched decode loop (bench_ceiling.py) of the base model in the run's
precision at our step's batch; `sampling_over_ceiling` = our step's sampled tokens/s over the loop's.

Equal settings (TRL 1.16's defaults differ, so every one is set explicitly; SPEC §12):
- loss: TRL `loss_type="grpo"` = per-sequence token mean, then mean over sequences, which is our
  `normaliser="sequence"` (Σ_seq mean_t / n_seqs). TRL's default "dapo" divides by the batch token count.
- advantages: TRL `scale_rewards="group"` = (r - mean_g) / (std_g + 1e-4), Bessel std, as our GRPO.
- `beta=0.0` (no reference pass in either), `num_iterations=1` / `epochs=1` (ratio is 1, old log-probs
  are the detached current ones in both), clip ε = 0.2 both sides, token-level ratio.
- optimiser: torch AdamW (TRL `optim="adamw_torch"`, not its fused default), `weight_decay=0.01` (torch's
  default, which ours uses), constant learning rate, no gradient clipping (`max_grad_norm=0`), one
  optimiser step per batch (`gradient_accumulation_steps=1`, `steps_per_generation=1`).
- sampling: temperature 1, top_p 1, top_k 0, no repetition penalty, transformers `generate` (no vLLM,
  no continuous batching), all N*G sequences in one generate call in both.
- precision: `--precision` (auto | fp32 | bf16; auto measures this machine, budgetlab.precision) for both
  sides: bf16 means bf16 autocast for the training forward/backward with fp32 weights (TRL `bf16=True` on
  CPU is accelerate's autocast); no gradient checkpointing (TRL's GRPOConfig default is True; ours is off).
  Generation is where the two engines differ, so it is timed both ways: `ours` samples with a merged
  copy of the policy in that precision, synced each step (our default, `RLConfig.rollout_dtype`; what an
  inference engine does), `ours_fp32` samples with the fp32 LoRA model as TRL's transformers path does
  (`ratio_fp32_rollout`). Both sides load the model through `budgetlab.models.load_model`, so both get
  the contiguous-output-head fix.
- LoRA: the very same `budgetlab.models.lora_config` (r, alpha 32, dropout 0, all linear projections of
  the top `--lora-layers` layers) given to TRL as `peft_config`.
- idle sequences: TRL computes a group whose rewards are all alike (advantage 0) though its gradient is 0; our
  loop leaves such sequences out (`RLConfig.skip_idle`), so here it is switched off and both sides do the same work.
- prompts: `format_prompt` texts of `make_synthetic` rows; reward: `trl_correctness_reward` for TRL,
  our `correctness_reward` (formatted and correct) for ours.
"""

from __future__ import annotations

import os

# No network, ever: set before transformers / trl / datasets are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP waiting as the main job has it (both sides alike): a short spin; export OMP_WAIT_POLICY=PASSIVE when
# another busy process shares the cores (spinning threads then slow each other, LOG.md).
from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from typing import Callable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="'default' (SmolLM2-135M), 'tiny', or a local folder")
    p.add_argument("--steps", type=int, default=3, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each run")
    p.add_argument("--rounds", type=int, default=2, help="alternations of ours / TRL / BRPO")
    p.add_argument("--prompts", type=int, default=4, help="N prompts per step")
    p.add_argument("--generations", type=int, default=4, help="G samples per prompt (>= 2 for TRL)")
    p.add_argument("--max-tokens", type=int, default=64, help="thinking cap: our budgets[-1]")
    p.add_argument("--summary-tokens", type=int, default=16, help="our summary cap (RLConfig.max_summary)")
    p.add_argument("--brpo-budgets", type=int, default=4, help="BRPO: this many budgets evenly up to --max-tokens")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-layers", type=int, default=10, help="LoRA on the top k layers (clamped to the model's)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-trl", action="store_true", help="skip TRL (only BRPO vs GRPO)")
    p.add_argument("--no-fp32", action="store_true", help="skip our GRPO run with fp32 rollouts")
    p.add_argument("--profile", action="store_true", help="cProfile one of our GRPO steps, print the top 15")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="both sides' compute precision; auto times a matmul here and takes bf16 only where faster")
    args = p.parse_args(argv)
    for name in ("steps", "rounds", "prompts", "generations", "max_tokens", "summary_tokens", "brpo_budgets",
                 "threads", "lora_r", "lora_layers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be a positive integer.")
    if args.warmup < 0:
        p.error(f"--warmup={args.warmup} must be 0 or more.")
    if args.generations < 2 and not args.no_trl:
        p.error(f"--generations={args.generations}: TRL's GRPOTrainer needs at least 2.")
    if args.brpo_budgets > args.max_tokens:
        p.error(f"--brpo-budgets={args.brpo_budgets} is more than --max-tokens={args.max_tokens}.")
    return args


# ------------------------------------------------------------------------------------ shared pieces

def num_layers_of(model_name: str) -> int:
    from transformers import AutoConfig

    from budgetlab.model_files import resolve_model_path

    return AutoConfig.from_pretrained(resolve_model_path(model_name)).get_text_config().num_hidden_layers


def brpo_budgets(max_tokens: int, count: int) -> list[int]:
    """`count` budgets evenly spaced up to max_tokens, e.g. (64, 4) -> [16, 32, 48, 64]."""
    return sorted({max(1, round(max_tokens * (j + 1) / count)) for j in range(count)})


def timed(fn: Callable, sink: list[float]) -> Callable:
    """fn wrapped so every call appends its wall time to sink."""
    def inner(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            sink.append(time.perf_counter() - t0)
    return inner


@contextlib.contextmanager
def our_stage_timers(times: dict[str, list[float]]):
    """Time budgetlab.train.score and .update per call (patched for the run, restored after; library untouched)."""
    import budgetlab.train as train_mod

    originals = {name: getattr(train_mod, name) for name in ("score", "update")}
    for name, fn in originals.items():
        setattr(train_mod, name, timed(fn, times.setdefault(name, [])))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(train_mod, name, fn)


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


# ------------------------------------------------------------------------------------------- ours

def our_config(args, method: str, budgets: list[int], seed: int, steps: int, rollout_dtype: str = "auto"):
    from budgetlab.train import RLConfig

    batch = args.prompts * args.generations
    return RLConfig(method=method, steps=steps, prompts_per_step=args.prompts, generations=args.generations,
                    budgets=budgets, summaries=1, max_summary=args.summary_tokens, temperature=1.0, lr=args.lr,
                    epochs=1, clip_low=0.2, clip_high=0.2, normaliser="sequence", beta=0.0,
                    micro_batch=batch, precision=args.precision, checkpoint_every=10**9, seed=seed,
                    rollout_dtype=rollout_dtype, skip_idle=False)  # TRL computes every sequence; so does ours here


def run_ours(args, rows, method: str, budgets: list[int], seed: int, lora_layers: int,
             rollout_dtype: str = "auto") -> dict:
    """One run of train_rl; per timed step: total, sample, score, update seconds and generated tokens."""
    from budgetlab.models import load_model
    from budgetlab.train import train_rl

    model, tok = load_model(args.model, adapter="lora", lora_r=args.lora_r, lora_alpha=32, lora_dropout=0.0,
                            lora_layers=lora_layers, device="cpu")
    cfg = our_config(args, method, budgets, seed, args.warmup + args.steps, rollout_dtype)
    stages: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix=f"bench_{method}_") as out, our_stage_timers(stages):
        metrics = train_rl(model, tok, rows, cfg, out, progress=False)
    keep = slice(args.warmup, None)
    steps = [m["step_seconds"] for m in metrics][keep]
    return {"step": steps, "sample": [m["sample_seconds"] for m in metrics][keep],
            "score": stages.get("score", [])[keep], "update": stages.get("update", [])[keep],
            "gen_tokens": [m["gen_tokens"] for m in metrics][keep],
            "train_tokens": [m.get("train_tokens", 0) for m in metrics][keep]}


def decode_ceiling(args, rows) -> float:
    """Tokens/s of a bare batched decode loop on the model our step samples with (the base model's generation copy
    in the run's precision, on packed weights where `inference.onednn_is_faster`), our step's batch and length."""
    from bench_ceiling import bare_decode_tokens_per_s  # benchmarks/ is on sys.path when run as a script

    from budgetlab.inference import generation_copy
    from budgetlab.models import load_model
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import left_pad

    base, tok = load_model(args.model, device="cpu")
    model = generation_copy(base, "bfloat16" if args.precision == "bf16" else "float32").model
    prompts = [encode_prompt(tok, r["question"]) for r in rows[:args.prompts] for _ in range(args.generations)]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    bare_decode_tokens_per_s(model, ids, mask, 4)  # warm-up
    return bare_decode_tokens_per_s(model, ids, mask, args.max_tokens + args.summary_tokens)


def profile_ours(args, rows, lora_layers: int) -> str:
    """cProfile of one GRPO step after the warmup steps (checkpoint after warmup, then resume for one step)."""
    from budgetlab.models import load_model
    from budgetlab.train import train_rl

    model, tok = load_model(args.model, adapter="lora", lora_r=args.lora_r, lora_layers=lora_layers, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench_profile_") as out:
        warm = max(args.warmup, 1)
        train_rl(model, tok, rows, our_config(args, "grpo", [args.max_tokens], args.seed, warm), out, progress=False)
        prof = cProfile.Profile()
        prof.enable()
        train_rl(model, tok, rows, our_config(args, "grpo", [args.max_tokens], args.seed, warm + 1), out,
                 resume=True, progress=False)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------- TRL

def trl_config(args, out_dir: str, seed: int, steps: int, max_completion: int):
    """GRPOConfig with every setting that matters for a like-for-like step set explicitly."""
    from trl import GRPOConfig

    batch = args.prompts * args.generations
    return GRPOConfig(
        output_dir=out_dir, max_steps=steps, seed=seed, data_seed=seed,
        # batch: N*G completions per step, one generation per optimiser step, no accumulation
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=args.generations, max_completion_length=max_completion, shuffle_dataset=True,
        # objective
        loss_type="grpo", scale_rewards="group", beta=0.0, num_iterations=1, epsilon=0.2, epsilon_high=0.2,
        importance_sampling_level="token", mask_truncated_completions=False, top_entropy_quantile=1.0,
        # optimiser
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=0.0,
        # sampling
        temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0, use_vllm=False,
        use_transformers_continuous_batching=False, cache_implementation=None, pad_to_multiple_of=None,
        # precision and memory
        bf16=args.precision == "bf16", fp16=False, gradient_checkpointing=False, cast_lm_head_to_fp32=False, disable_dropout=False,
        use_cpu=True,
        # bookkeeping kept out of the way
        report_to=[], logging_steps=1, save_strategy="no", eval_strategy="no", disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0, remove_unused_columns=False,
    )


def run_trl(args, rows, seed: int, lora_layers: int, num_layers: int, max_completion: int) -> dict:
    """One GRPOTrainer.train(); per timed step: total (on_step_begin -> on_step_end), generate, reward seconds."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from budgetlab.data import format_prompt
    from budgetlab.models import load_model, lora_config
    from budgetlab.rewards import trl_correctness_reward

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t0, self.steps, self.logs = 0.0, [], []

        def on_step_begin(self, targs, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            self.steps.append(time.perf_counter() - self.t0)

        def on_log(self, targs, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.logs.append(dict(logs))

    model, tok = load_model(args.model, adapter="none", device="cpu")
    peft = lora_config(num_layers, r=args.lora_r, alpha=32, dropout=0.0, layers=lora_layers)
    data = Dataset.from_list([{"prompt": format_prompt(r["question"]), "answer": r["answer"]} for r in rows])
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as out:
        trainer = GRPOTrainer(model=model, reward_funcs=trl_correctness_reward,
                              args=trl_config(args, out, seed, args.warmup + args.steps, max_completion),
                              train_dataset=data, processing_class=tok, peft_config=peft, callbacks=[timer])
        gen_t: list[float] = []
        rew_t: list[float] = []
        trainer._generate = timed(trainer._generate, gen_t)  # instance attributes: the class is untouched
        trainer._calculate_rewards = timed(trainer._calculate_rewards, rew_t)
        trainer.train()
    keep = slice(args.warmup, None)
    batch = args.prompts * args.generations
    return {"step": timer.steps[keep], "sample": gen_t[keep], "score": rew_t[keep],
            "gen_tokens": [lg["completions/mean_length"] * batch for lg in timer.logs][keep]}


# ------------------------------------------------------------------------------------------- main

def breakdown(name: str, runs: list[dict]) -> str:
    """One line: mean seconds per timed step for each stage, pooled over runs."""
    pool = {k: [x for r in runs for x in r.get(k, [])] for k in ("step", "sample", "score", "update", "gen_tokens")}
    step, sample, score = mean(pool["step"]), mean(pool["sample"]), mean(pool["score"])
    parts = [f"step {step:.2f}s", f"generate {sample:.2f}s ({100 * sample / step:.0f}%)",
             f"reward {score:.3f}s ({100 * score / step:.1f}%)"]
    if pool["update"]:
        update = mean(pool["update"])
        other = step - sample - score - update
        parts += [f"update {update:.2f}s ({100 * update / step:.0f}%)", f"other {other:.3f}s"]
    else:
        parts.append(f"rest (log-probs + loss + backward + optimiser) {step - sample - score:.2f}s "
                     f"({100 * (step - sample - score) / step:.0f}%)")
    parts.append(f"{mean(pool['gen_tokens']):.0f} generated tokens/step")
    return f"{name:>9}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from budgetlab.model_files import load_tokenizer
    from budgetlab.synthetic import make_synthetic
    from budgetlab.truncation import Markers

    torch.set_num_threads(args.threads)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass
    from budgetlab.precision import describe, model_shape, resolve

    choice = resolve(args.precision, shape=model_shape(args.model))
    args.precision = choice["precision"]  # both sides run in the measured choice
    print(f"precision {describe(choice)}", flush=True)
    num_layers = num_layers_of(args.model)
    lora_layers = min(args.lora_layers, num_layers)
    rows = make_synthetic(64, seed=args.seed)
    # Token accounting. Our step decodes the thinking with max_new = budgets[-1] + len("</think>" ids) (room
    # for the model's own close tag; the trace is then cut to budgets[-1]), prefills the inserted marker and
    # answer cue, and decodes at most `summary_tokens` summary tokens. So its most decoded tokens per sample
    # are max_tokens + len(end_ids) + summary_tokens; TRL's max_completion_length is set to that same number.
    # Ours stops the thinking at "</think>" or EOS and the summary at EOS; TRL stops only at EOS.
    end_ids = Markers.from_tokenizer(load_tokenizer(args.model)).end_ids
    max_completion = args.max_tokens + len(end_ids) + args.summary_tokens
    grpo_b, brpo_b = [args.max_tokens], brpo_budgets(args.max_tokens, args.brpo_budgets)

    runs: dict[str, list[dict]] = {"ours": [], "ours_fp32": [], "trl": [], "brpo": []}
    for rnd in range(args.rounds):
        order = ["ours", "ours_fp32", "trl", "brpo"] if rnd % 2 == 0 else ["brpo", "trl", "ours_fp32", "ours"]
        if args.no_trl:
            order.remove("trl")
        if args.no_fp32:
            order.remove("ours_fp32")
        for name in order:
            seed = args.seed + rnd
            t0 = time.perf_counter()
            if name == "ours":
                res = run_ours(args, rows, "grpo", grpo_b, seed, lora_layers)
            elif name == "ours_fp32":
                res = run_ours(args, rows, "grpo", grpo_b, seed, lora_layers, rollout_dtype="model")
            elif name == "brpo":
                res = run_ours(args, rows, "brpo", brpo_b, seed, lora_layers)
            else:
                res = run_trl(args, rows, seed, lora_layers, num_layers, max_completion)
            runs[name].append(res)
            print(f"round {rnd + 1}/{args.rounds} {name:>9}: steps {[round(s, 2) for s in res['step']]} s "
                  f"(run {time.perf_counter() - t0:.0f} s)", flush=True)

    def med(name: str) -> float | None:
        pooled = [s for r in runs[name] for s in r["step"]]
        return statistics.median(pooled) if pooled else None

    print("where the time goes (mean per timed step):")
    for name, label in (("ours", "ours grpo"), ("ours_fp32", "ours grpo, fp32 rollouts"), ("trl", "trl grpo"),
                        ("brpo", "ours brpo")):
        if runs[name]:
            print(breakdown(label, runs[name]))
    if args.profile:
        print("cProfile of one of our GRPO steps (top 15 by cumulative time):")
        print(profile_ours(args, rows, lora_layers))

    ours, ours32, trl_s, brpo = med("ours"), med("ours_fp32"), med("trl"), med("brpo")
    ceiling = decode_ceiling(args, rows)
    sampled = mean(x for r in runs["ours"] for x in r["gen_tokens"]) / mean(x for r in runs["ours"] for x in r["sample"])
    print(f"sampling: ours {sampled:.0f} tokens/s, bare decode loop {ceiling:.0f} tokens/s", flush=True)
    result = {
        "ours_s_per_step": ours, "trl_s_per_step": trl_s,
        "ratio": ours / trl_s if ours and trl_s else None,
        "ours_fp32_rollout_s_per_step": ours32, "ratio_fp32_rollout": ours32 / trl_s if ours32 and trl_s else None,
        "brpo_s_per_step": brpo, "grpo_s_per_step": ours,
        "ratio_brpo_over_grpo": brpo / ours if brpo and ours else None,
        "sampling_tokens_per_s": sampled, "decode_ceiling_tokens_per_s": ceiling,
        "sampling_over_ceiling": sampled / ceiling,
        "ours_gen_tokens_per_step": mean(x for r in runs["ours"] for x in r["gen_tokens"]),
        "trl_gen_tokens_per_step": mean(x for r in runs["trl"] for x in r["gen_tokens"]) if runs["trl"] else None,
        "brpo_gen_tokens_per_step": mean(x for r in runs["brpo"] for x in r["gen_tokens"]),
        "config": {"model": args.model, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                   "prompts": args.prompts, "generations": args.generations, "max_thinking_tokens": args.max_tokens,
                   "summary_tokens": args.summary_tokens, "trl_max_completion_length": max_completion,
                   "brpo_budgets": brpo_b, "threads": args.threads, "lora_r": args.lora_r, "lora_alpha": 32,
                   "lora_layers": lora_layers, "lr": args.lr, "precision": choice,
                   "cpu_capability": choice["cpu_capability"], "cpu_kind": choice["cpu_kind"],
                   "rollouts": f"ours samples with a merged {choice['precision']} copy (ours_fp32: fp32 LoRA model), TRL with its fp32 LoRA model",
                   "trl_loss_type": "grpo", "ours_normaliser": "sequence", "scale_rewards": "group", "beta": 0.0,
                   "stat": "median of pooled timed steps"},
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
