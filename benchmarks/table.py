"""`make bench`: run every benchmark once, one after another, and print one table of their ratios.

    python benchmarks/table.py [--model default] [--quick] [--run-dir results/<make run's folder>]

Each benchmark's last stdout line is JSON (benchmarks/README.md); this collects them into the speed issue's
table: each figure with its peer or ceiling, measured in the same run of that benchmark, and the goal.
`--run-dir` adds the main job's figures from a finished run (its `01_budget_sft` stage time and RL samples
trained per minute, their mean and each method's). `--quick` shrinks every benchmark to a smoke size (for
checking the table, not for numbers).
The CPU capability heads the table; the whole table is also written as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
QUICK = {"bench_grpo_vs_trl.py": ["--steps", "1", "--rounds", "1", "--warmup", "0"],
         "bench_anytime_eval.py": ["--problems", "4", "--rounds", "1"],
         "bench_ceiling.py": ["--steps", "1", "--rows", "4", "--tokens", "16", "--lora-layers", "2"]}


def run(script: str, args: list[str]) -> dict:
    """Run one benchmark with the same interpreter, echoing its output; its last line parsed as JSON."""
    cmd = [sys.executable, str(HERE / script), *args]
    print("==>", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{script} failed (exit {proc.returncode}).")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Seconds the issue-time `make run` took per RL stage of 64 samples (4 steps x 16), by method: the speed issue's
# "today" (LOG.md, 2026-11-30, AVX512-BF16). Its goal is 3x the samples per minute, here taken against the
# fastest of each range.
ISSUE_TIME_STAGE_S = {"grpo": 68, "drgrpo": 69, "brpo": 76, "ibpo": 47, "selfbudgeter": 68}


def main_job(run_dir: Path) -> dict:
    """01's stage seconds and RL samples trained per minute of stage time (each method's, and their mean) from a
    finished run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    per_step = int(config["PROMPTS_PER_STEP"]) * int(config["GENERATIONS"])
    rates = {m: len(pd.read_csv(run_dir / "rl" / m / "metrics.csv")) * per_step
             / (summary["stage_seconds"][f"02_rl_{m}"] / 60)
             for m in config["METHODS"] if (run_dir / "rl" / m / "metrics.csv").exists()}
    return {"sft_stage_s": summary["stage_seconds"]["01_budget_sft"],
            "rl_samples_per_min": sum(rates.values()) / len(rates), "rl_samples_per_min_by_method": rates}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def table(trl: dict, anytime: dict, ceiling: dict, job: dict | None) -> pd.DataFrame:
    rows = [
        ("our GRPO step / TRL GRPOTrainer step", trl.get("ratio"), "≤ 0.25"),
        ("  its sampling tokens/s / bare batched decode tokens/s (ceiling)", trl.get("sampling_over_ceiling"), ""),
        ("our BRPO step / our GRPO step", trl.get("ratio_brpo_over_grpo"), "≤ 1.15"),
        ("  BRPO's sampled tokens / GRPO's, its summaries at every budget being work by design (bound)",
         ratio(trl.get("brpo_gen_tokens_per_step"), trl.get("ours_gen_tokens_per_step")), ""),
        ("8-budget anytime curve / one plain full-budget pass", anytime["ratio"], "≤ 1.25"),
        ("  bare decode of the plain pass's tokens / the curve (ceiling)", anytime.get("ours_over_ceiling"), ""),
        ("  bare decode of the curve's tokens / of the plain pass's tokens (ceiling)",
         anytime.get("ratio_at_ceiling"), ""),
        ("rollout tokens/s / bare batched decode tokens/s", ceiling["rollout_over_ceiling"], "≥ 0.6"),
        ("  bare decode tokens/s at 4× the rows / at the rollout's rows (ceiling)",
         ceiling.get("decode_4x_rows_over_1x"), ""),
        ("SFT step FLOP/s / matmul peak", ceiling["sft_over_peak"], "≥ 0.5"),
        ("  the same if its matmuls ran at the peak and the rest as measured (bound)",
         ceiling.get("sft_bound_at_peak"), ""),
        ("RL update FLOP/s / matmul peak", ceiling["rl_update_over_peak"], "≥ 0.5"),
        ("  the same if its matmuls ran at the peak and the rest as measured (bound)",
         ceiling.get("rl_update_bound_at_peak"), ""),
    ]
    if job:
        rows += [("01_budget_sft stage in make run (s)", job["sft_stage_s"], "≤ 120"),
                 ("RL samples trained per minute in make run (mean over methods)", job["rl_samples_per_min"],
                  "≥ 3× 47–82")]
        rows += [(f"  {m}", rate, f"≥ {3 * 64 * 60 / ISSUE_TIME_STAGE_S[m]:.0f}" if m in ISSUE_TIME_STAGE_S else "")
                 for m, rate in job.get("rl_samples_per_min_by_method", {}).items()]
    return pd.DataFrame(rows, columns=["figure", "measured", "goal"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run-dir", type=Path, default=None, help="a finished make run, for the main job's figures")
    ap.add_argument("--out", type=Path, default=Path("results/bench.json"))
    args = ap.parse_args(argv)
    if args.run_dir is not None and not (args.run_dir / "summary.json").exists():
        print(f"--run-dir {args.run_dir} has no summary.json; give a finished run's folder.", file=sys.stderr)
        return 2
    extra = lambda s: ["--model", args.model] + (QUICK[s] if args.quick else [])  # noqa: E731
    results = {s.removesuffix(".py"): run(s, extra(s)) for s in QUICK}
    job = main_job(args.run_dir) if args.run_dir else None
    t = table(results["bench_grpo_vs_trl"], results["bench_anytime_eval"], results["bench_ceiling"], job)
    cpu, kind = results["bench_ceiling"]["cpu_capability"], results["bench_ceiling"]["cpu_kind"]
    precision = results["bench_ceiling"]["precision"]["precision"]
    print(f"\ncpu capability {cpu} ({kind}), precision {precision}, model {args.model}")
    print("| figure | measured | goal |\n|---|---|---|")
    for r in t.itertuples():
        print(f"| {r.figure} | {'not measured' if r.measured is None else f'{r.measured:.2f}'} | {r.goal} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_capability": cpu, "cpu_kind": kind, "table": t.to_dict("records"),
                                    "runs": results, "main_job": job}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
