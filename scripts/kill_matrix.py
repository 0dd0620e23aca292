"""Kill the whole chain at moments spread over every stage, resume, and check nothing was lost.

    python scripts/kill_matrix.py --kills 10                       # smoke profile, 2 kill points per stage
    python scripts/kill_matrix.py --kills 10 -p 'METHODS=[grpo,brpo]' --seed 1

One unbroken run of the profile gives the reference and each stage's time window. Then, for each kill point, a
fresh run of the same profile gets SIGKILL (its whole process group, kernels included: nothing can save) at a
moment drawn uniformly inside one stage (a delay after that stage starts in the killed run itself, up to the
stage's length in the reference), stages taken in turn 00 → 04, and `--resume` finishes it.
`summary.json` must then equal the reference's apart from timings (`stage_seconds`, `wall_seconds`, the
precision record's measured milliseconds), and so must every RL `metrics.csv` apart from its timing columns.
The precision is fixed to the reference's choice, so `auto` cannot choose differently between runs.
The last stdout line is JSON: one row per kill point (stage, seconds, where the run really was, identical).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("00_data_prep", "01_budget_sft", "02_rl", "03_anytime_eval", "04_report")
TIMING = {"step_seconds", "sample_seconds", "tokens_per_s"}


def run(cmd: list[str], log: Path, kill: tuple[str, float] | None = None) -> dict[str, float]:
    """Run the pipeline, logging to `log`. With kill=(stage, delay): SIGKILL its process group `delay` seconds
    after that stage's first notebook starts in this very run (so a run slower or faster than the reference still
    dies inside the stage). Returns the time (since start) each notebook started, from its '[budgetlab] NAME:
    running' line."""
    starts, t0, started = {}, time.perf_counter(), threading.Event()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)

    def read() -> None:
        with open(log, "w") as out:
            for line in proc.stdout:
                out.write(line)
                if m := re.match(r"\[budgetlab\] (\S+): running", line):
                    starts[m.group(1)] = time.perf_counter() - t0
                    if kill and m.group(1).startswith(kill[0]):
                        started.set()
        started.set()  # the run ended before the stage began: nothing left to wait for

    reader = threading.Thread(target=read)
    reader.start()
    if kill:
        started.wait()
        try:
            proc.wait(timeout=kill[1])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(3)  # a kernel (its own session) notices its parent died and exits within a second
    proc.wait()
    reader.join()
    if kill is None and proc.returncode != 0:
        raise SystemExit(f"{cmd} failed (exit {proc.returncode}); see {log}")
    return starts


def comparable_summary(run_dir: Path) -> str:
    """summary.json without its timings, as canonical JSON text (so NaN equals NaN, as it does in the file).
    Of the precision record only the choice is kept: the killed runs are given the reference's choice, so their
    record reads "as set" where the reference's holds the measurement."""
    s = json.loads((run_dir / "summary.json").read_text())
    for key in ("stage_seconds", "wall_seconds"):
        s.pop(key, None)
    s["precision"] = s.get("precision", {}).get("precision")
    return json.dumps(s, sort_keys=True)


def rl_metrics(run_dir: Path) -> str:
    """Every RL metrics.csv without its timing columns, as canonical JSON text."""
    return json.dumps({p.parent.name: pd.read_csv(p).drop(columns=[c for c in TIMING], errors="ignore")
                       .to_dict("records") for p in sorted((run_dir / "rl").glob("*/metrics.csv"))}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--kills", type=int, default=10, help="kill points, spread over the stages in turn")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--out", default=None, help="work folder (default results/kill-matrix-<time>)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if args.kills < 1:
        print(f"--kills={args.kills} must be a positive integer.", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "results" / f"kill-matrix-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "budgetlab.pipeline", "--profile", args.profile]
    for kv in args.param:
        base += ["-p", kv]
    ref = out / "reference"
    t0 = time.perf_counter()
    starts = run(base + ["--run-dir", str(ref)], out / "reference.log")
    total = time.perf_counter() - t0
    choice = json.loads((ref / "config.json").read_text())["PRECISION_CHOICE"]["precision"]
    base += ["-p", f"PRECISION={choice}"]
    # each stage's window: from its first notebook's start to the next stage's start (02 spans every method)
    firsts = {st: min(t for name, t in starts.items() if name.startswith(st)) for st in STAGES}
    ends = [firsts[s] for s in STAGES[1:]] + [total]
    windows = dict(zip(STAGES, zip(firsts.values(), ends)))
    want_summary, want_rl = comparable_summary(ref), rl_metrics(ref)
    rng, rows = random.Random(args.seed), []
    for k in range(args.kills):
        stage = STAGES[k % len(STAGES)]
        lo, hi = windows[stage]
        delay = rng.uniform(0.0, hi - lo)  # into the stage, as long as the reference spent in it
        run_dir = out / f"kill{k:02d}"
        t_kill = time.perf_counter()
        seen = run(base + ["--run-dir", str(run_dir)], out / f"kill{k:02d}.log", kill=(stage, delay))
        at = time.perf_counter() - t_kill
        running = max(seen, key=seen.get) if seen else "(before 00)"
        run(base + ["--run-dir", str(run_dir), "--resume"], out / f"kill{k:02d}.resume.log")
        same = comparable_summary(run_dir) == want_summary and rl_metrics(run_dir) == want_rl
        rows.append({"kill": k, "stage": stage, "into_stage_s": round(delay, 1), "killed_at_s": round(at, 1),
                     "running": running, "identical": same})
        print(f"kill {k}: {stage}, {delay:.1f} s into it ({at:.1f} s from the start; was running {running}) -> "
              f"resumed, identical: {same}", flush=True)
    print(json.dumps({"reference_seconds": round(total, 1), "windows": windows, "kills": rows,
                      "all_identical": all(r["identical"] for r in rows)}))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
