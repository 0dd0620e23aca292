"""This machine's ceilings for the main job's work, and how close our code gets, measured in one run.

    python benchmarks/bench_ceiling.py [--model default] [--precision auto] [--steps 4] [--rows 16]

Three ratios of achieved to ceiling, each ceiling measured in the same run on the same model:
- **SFT and RL update FLOP/s / matmul peak.** The work of one step is counted by `torch.utils.flop_counter`
  (every matmul of forward and backward, as the step really runs: LoRA on the top `--lora-layers` layers, the
  run's precision); the step is then timed `--steps` times (median). The peak is the best FLOP/s of
  `torch.nn.functional.linear` over the model's own linear shapes, at the step's token count, on input and
  weight already in the step's precision (no cast timed).
  The SFT step is `budgetlab.sft` on `--rows` testbed examples (the default profile's warm start), every layer
  run (`make run`'s steps skip the frozen bottom layers, `budgetlab.prefix`: less work, not a higher rate); the RL
  update is `budgetlab.update.update` (PPO-clip, one epoch) on the same sequences with ±1 advantages.
  What bounds the ratio is measured too: one more step runs under the torch profiler, which splits its operator
  time between the ops the flop counter counts (the matmuls; CPU attention is not counted) and all the rest
  (attention, casts, elementwise ops, the optimizer). `*_bound_at_peak` is the ratio the step would reach if
  every counted matmul ran at the peak and the rest took the time it does: the most that faster matmuls can buy.
- **Rollout tokens/s / decode ceiling.** Ours: the HF backend's thinking pass (`HFRollout.rollout`, sampling,
  the generation copy's precision) writing `--tokens` tokens for `--rows` prompts. The ceiling: the same
  model's batched forward at the same batch, one token per row against the KV cache, in a bare loop (greedy
  argmax, no `generate`, the cache appending in place as ours does), the most a decode step can do here. The
  same loop at 2x and 4x the rows shows how much a wider batch (more RL samples per step) would buy: a decode
  step reads every weight once, whatever the batch.
The CPU capability and the precision are printed beside every figure; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, flop_registry  # noqa: E402

from budgetlab.decode import reserve_room  # noqa: E402
from budgetlab.inference import generation_copy  # noqa: E402
from budgetlab.models import load_model  # noqa: E402
from budgetlab.precision import PRECISIONS, FrozenInBf16, describe, resolve  # noqa: E402
from budgetlab.prompts import encode_prompt, sft_example  # noqa: E402
from budgetlab.rollout import HFRollout, left_pad  # noqa: E402
from budgetlab.sft import SFTConfig, sft  # noqa: E402
from budgetlab.synthetic import make_testbed  # noqa: E402
from budgetlab.train import RLConfig  # noqa: E402
from budgetlab.update import update  # noqa: E402


def linear_shapes(model) -> list[tuple[int, int]]:
    """The distinct (in, out) shapes of the base model's linear layers, the output head included."""
    return sorted({(m.in_features, m.out_features) for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and ".lora_" not in name})  # LoRA's rank-r factors: negligible


def matmul_peak(shapes, tokens: int, bf16: bool, repeats: int = 5) -> tuple[float, dict]:
    """(best FLOP/s, {shape: FLOP/s}): F.linear on x[tokens, in] @ W[out, in]^T, both already in the step's
    precision (no cast inside the timing: the bare matmul is the ceiling)."""
    per = {}
    dtype = torch.bfloat16 if bf16 else torch.float32
    for k, n in shapes:
        x, w = torch.randn(tokens, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        with torch.no_grad():
            F.linear(x, w)  # warm-up (and oneDNN's weight reorder)
            best = min(_timed(lambda: F.linear(x, w)) for _ in range(repeats))
        per[f"{k}x{n}"] = 2.0 * tokens * k * n / best
    return max(per.values()), per


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def counted_flops(fn) -> int:
    """Total FLOPs torch's flop counter sees while fn runs (forward and backward matmuls, attention)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


# the ops torch's flop counter counts, by the names the profiler gives them ("aten::mm", ...)
COUNTED_OPS = frozenset(getattr(op, "_qualified_op_name", str(op)) for op in flop_registry)


def counted_time_share(fn) -> float:
    """The share of fn's operator time (the profiler's self CPU time, summed) spent in the ops the flop counter
    counts; the rest is work that adds no counted FLOPs."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    return (sum(e.self_cpu_time_total for e in events if e.key in COUNTED_OPS)
            / sum(e.self_cpu_time_total for e in events))


def bound_at_peak(flops: int, seconds: float, share: float, peak: float) -> float:
    """FLOP/s over peak if the counted matmuls ran at `peak` and the rest ((1 - share) of the step) took as long."""
    at_peak = flops / peak
    return at_peak / (at_peak + (1.0 - share) * seconds)


def sft_step_seconds(model, tok, examples, bf16: bool, steps: int) -> tuple[int, float, float]:
    """(FLOPs of one SFT step, median seconds of `steps` timed ones, counted ops' share of the time), all examples
    in one batch. The share comes from `steps` more steps in one profiled call (its setup spread over them)."""
    precision = "bf16" if bf16 else "fp32"
    with tempfile.TemporaryDirectory() as d:
        cfg = SFTConfig(steps=1, batch_size=len(examples), micro_batch=len(examples), lr=1e-6, precision=precision,
                        checkpoint_every=10**6, prefix_cache=False)
        flops = counted_flops(lambda: sft(model, tok, examples, cfg, d, progress=False))
        cfg.steps = steps + 1  # the first is a warm-up
        rows = sft(model, tok, examples, cfg, d + "/timed", progress=False)
        cfg.steps = steps
        share = counted_time_share(lambda: sft(model, tok, examples, cfg, d + "/profiled", progress=False))
    return flops, statistics.median(r["step_seconds"] for r in rows[1:]), share


def update_seconds(model, tok, examples, bf16: bool, steps: int) -> tuple[int, float, float]:
    """(FLOPs of one RL update, median seconds, counted ops' share of one more update's time): PPO-clip, one
    epoch, ±1 advantages on the trained tokens."""
    cfg = RLConfig(method="grpo", precision="bf16" if bf16 else "fp32", micro_batch=len(examples)).validate()
    seqs = [type(e)(e.ids, [(1.0 if i % 2 else -1.0) * a for a in e.adv], e.mask) for i, e in enumerate(examples)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    frozen = FrozenInBf16(model, bf16)  # as train_rl holds the frozen base for its updates

    def step():
        with frozen.active():
            update(model, opt, seqs, "ppo", cfg, tok.pad_token_id)

    flops = counted_flops(step)
    times = [_timed(step) for _ in range(steps)]
    return flops, statistics.median(times), counted_time_share(step)


def bare_decode_tokens_per_s(model, ids, mask, new_tokens: int) -> float:
    """Rows × new_tokens / seconds of a plain loop: one forward of [rows, 1] against the cache per token, the
    cache appending in place as `budgetlab.decode`'s does (`reserve_room`; with `torch.cat` our rollout beat it)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    reserve_room(cache, new_tokens + 1)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = model(input_ids=nxt, attention_mask=mask, past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return ids.shape[0] * new_tokens / (time.perf_counter() - t0)


def rollout_tokens_per_s(model, tok, prompts, new_tokens: int) -> float:
    """Our rollout (sampled thinking up to new_tokens, then a 1-token forced summary): tokens written / seconds."""
    roll = HFRollout(model, tok)
    t0 = time.perf_counter()
    traces = roll.rollout(prompts, [new_tokens], max_summary=1)
    dt = time.perf_counter() - t0
    return sum(t.n_thinking + len(t.summaries[-1][0].ids) for t in traces) / dt


def training_args(description: str) -> argparse.ArgumentParser:
    """The arguments this benchmark and profile_steps.py share: model, precision, LoRA layers, threads."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default="default")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    ap.add_argument("--lora-layers", type=int, default=10, help="LoRA on the top k layers (the default profile's)")
    ap.add_argument("--threads", type=int, default=2)
    return ap


def training_setup(args, rows: int):
    """(model with LoRA r16, tokenizer, precision choice, `rows` testbed SFT examples), seeded, on --threads."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_model(args.model, adapter="lora", lora_r=16, lora_layers=args.lora_layers)
    choice = resolve(args.precision, model)
    print(f"precision {describe(choice)}", flush=True)
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in make_testbed(rows, seed=1)]
    return model, tok, choice, examples


def main(argv=None) -> int:
    ap = training_args(__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16, help="sequences per SFT step / RL update, prompts per rollout")
    ap.add_argument("--steps", type=int, default=4, help="timed steps (median)")
    ap.add_argument("--tokens", type=int, default=64, help="thinking tokens per rollout row")
    args = ap.parse_args(argv)
    model, tok, choice, examples = training_setup(args, args.rows)
    bf16, cpu, kind = choice["precision"] == "bf16", choice["cpu_capability"], choice["cpu_kind"]
    rows = make_testbed(args.rows, seed=1)
    tokens = sum(len(e.ids) for e in examples)
    peak, per_shape = matmul_peak(linear_shapes(model), tokens, bf16)
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s at {tokens} tokens ({'bf16' if bf16 else 'fp32'}; cpu {cpu}, {kind}); "
          + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in per_shape.items()), flush=True)
    out = {"cpu_capability": cpu, "cpu_kind": kind, "precision": choice, "matmul_peak_gflops": peak / 1e9,
           "sft_tokens": tokens}
    for name, fn in (("sft", sft_step_seconds), ("rl_update", update_seconds)):
        flops, seconds, share = fn(model, tok, examples, bf16, args.steps)
        bound = bound_at_peak(flops, seconds, share, peak)
        out.update({f"{name}_gflop": flops / 1e9, f"{name}_seconds": seconds,
                    f"{name}_gflops": flops / seconds / 1e9, f"{name}_over_peak": flops / seconds / peak,
                    f"{name}_matmul_share": share, f"{name}_bound_at_peak": bound})
        print(f"{name}: {flops / 1e9:.1f} GFLOP a step in {seconds:.2f} s = {flops / seconds / 1e9:.1f} GFLOP/s, "
              f"{flops / seconds / peak:.2f} of the matmul peak; the matmuls take {share:.2f} of its time, so "
              f"with them at the peak it would reach {bound:.2f} (cpu {cpu})", flush=True)
    gen = generation_copy(model, "bfloat16" if bf16 else "float32").model
    prompts = [encode_prompt(tok, r["question"]) for r in rows]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    bare_decode_tokens_per_s(gen, ids, mask, 4)  # warm-up
    ceiling = statistics.median(bare_decode_tokens_per_s(gen, ids, mask, args.tokens) for _ in range(3))
    ours = statistics.median(rollout_tokens_per_s(gen, tok, prompts, args.tokens) for _ in range(3))
    out.update({"rollout_tokens_per_s": ours, "decode_ceiling_tokens_per_s": ceiling,
                "rollout_over_ceiling": ours / ceiling})
    print(f"rollout {ours:.0f} tokens/s against a bare batched decode loop's {ceiling:.0f} at batch {len(prompts)}: "
          f"{ours / ceiling:.2f} (cpu {cpu})", flush=True)
    by_rows = {args.rows: ceiling}  # a decode step reads every weight once whatever the batch: wider is cheaper
    for n in (2 * args.rows, 4 * args.rows):
        ids, mask = left_pad([encode_prompt(tok, r["question"]) for r in make_testbed(n, seed=1)], tok.pad_token_id)
        by_rows[n] = statistics.median(bare_decode_tokens_per_s(gen, ids, mask, args.tokens) for _ in range(2))
    out.update({"decode_ceiling_by_rows": by_rows, "decode_4x_rows_over_1x": by_rows[4 * args.rows] / ceiling})
    print("bare decode tokens/s by batch: " + ", ".join(f"{n} rows {v:.0f}" for n, v in by_rows.items())
          + f" (cpu {cpu})", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
