"""Kill an RL run at a random moment, resume it, and check it ends with the same metrics as an unbroken run.

    python scripts/check_kill_resume.py --from results/default-XXXX          # reuse that run's 00 and 01 stages
    python scripts/check_kill_resume.py --profile default --method brpo --steps 6 --seed 3
    python scripts/check_kill_resume.py --from results/default-XXXX -p BETA=0.05   # with the KL term

Both runs go through the real pipeline (`python -m budgetlab.pipeline --until 02_rl`), on the profile's
model and settings with `RL_STEPS=--steps` and `CHECKPOINT_EVERY=1`. The broken run gets SIGKILL (no
chance to save anything) at a time drawn uniformly from [--min-seconds, 90% of the unbroken run's
02 stage], then `--resume` continues it from its last checkpoint. `-p KEY=VALUE` (repeatable) passes
further pipeline parameters to both runs. Timing columns aside, every column of
`rl/<method>/metrics.csv` must be equal. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"step_seconds", "sample_seconds", "tokens_per_s"}


def pipeline_cmd(profile: str, run_dir: Path, method: str, steps: int, resume: bool,
                 params: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "budgetlab.pipeline", "--profile", profile, "--run-dir", str(run_dir), "--until",
           "02_rl", "-p", f"METHODS=[{method}]", "-p", f"RL_STEPS={steps}", "-p", "CHECKPOINT_EVERY=1"]
    for kv in params:
        cmd += ["-p", kv]
    return cmd + (["--resume"] if resume else [])


def seed_run_dir(base: Path, target: Path) -> None:
    """A run folder holding only `base`'s finished 00 and 01 stages."""
    target.mkdir(parents=True)
    for part in ("data", "adapters/warmstart", "adapters/selfbudgeter_sft"):
        if (base / part).exists():
            shutil.copytree(base / part, target / part)
    (target / "stages").mkdir()
    for stage in ("00_data_prep", "01_budget_sft"):
        shutil.copy(base / "stages" / f"{stage}.done", target / "stages")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--from", dest="base", default=None, help="a run folder whose 00 and 01 stages are done")
    ap.add_argument("--method", default="grpo")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None, help="draws the kill time (default: from the clock)")
    ap.add_argument("--min-seconds", type=float, default=20.0)
    ap.add_argument("--out", default=None, help="working folder (default results/kill-resume-<time>)")
    ap.add_argument("-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                    help="a further pipeline parameter for both runs, e.g. -p BETA=0.05 (repeatable)")
    args = ap.parse_args(argv)
    if args.steps < 2:
        print(f"--steps={args.steps} must be at least 2 for a kill between steps to mean anything.", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "results" / f"kill-resume-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    base = Path(args.base).resolve() if args.base else out / "base"
    if not args.base:
        subprocess.run([sys.executable, "-m", "budgetlab.pipeline", "--profile", args.profile, "--run-dir", str(base),
                        "--until", "01_budget_sft"], check=True, cwd=ROOT, env=env)
    whole, broken = out / "whole", out / "broken"
    for d in (whole, broken):
        seed_run_dir(base, d)

    t0 = time.perf_counter()
    run_cmd = pipeline_cmd(args.profile, whole, args.method, args.steps, True, args.params)
    subprocess.run(run_cmd, check=True, cwd=ROOT, env=env)
    whole_s = time.perf_counter() - t0
    rng = random.Random(args.seed)
    kill_at = rng.uniform(args.min_seconds, max(args.min_seconds + 1, 0.9 * whole_s))
    print(f"[kill-resume] unbroken run {whole_s:.0f}s; killing the second at {kill_at:.0f}s", flush=True)

    broken_cmd = pipeline_cmd(args.profile, broken, args.method, args.steps, True, args.params)
    proc = subprocess.Popen(broken_cmd, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        proc.wait(timeout=kill_at)
        print("[kill-resume] the run ended before the kill time; draw an earlier time", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: pipeline, papermill and the notebook kernel
        proc.wait()
    metrics_file = broken / "rl" / args.method / "metrics.csv"
    at_kill = len(pd.read_csv(metrics_file)) if metrics_file.exists() else 0
    ckpts = sorted(p.name for p in (broken / "rl" / args.method / "checkpoints").glob("step_*"))
    print(f"[kill-resume] killed after {at_kill} logged steps; checkpoints {ckpts}", flush=True)
    subprocess.run(broken_cmd, check=True, cwd=ROOT, env=env)

    a = pd.read_csv(whole / "rl" / args.method / "metrics.csv")
    b = pd.read_csv(metrics_file)
    cols = [c for c in a.columns if c not in TIMING]
    equal = list(a.columns) == list(b.columns) and len(a) == len(b) == args.steps and a[cols].equals(b[cols])
    diff = float((a[cols] - b[cols]).abs().max().max()) if len(a) == len(b) and list(a.columns) == list(b.columns) else None
    print(json.dumps({"method": args.method, "steps": args.steps, "kill_at_s": round(kill_at, 1),
                      "logged_steps_at_kill": at_kill, "checkpoints_at_kill": ckpts, "equal": bool(equal),
                      "max_abs_diff": diff, "params": args.params, "compared_columns": cols, "out": str(out)}))
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
