"""Can an RL method fit a handful of problems? The sanity check to run before reading a flat learning curve.

    python scripts/check_rl_learns.py RUN_DIR [--method grpo] [--problems 8] [--steps 20] [--lr 1e-4]

Starts from RUN_DIR's warm-start adapter (notebook 01; SelfBudgeter is not covered: it needs phase-1
labels), draws `--problems` level-balanced training problems and trains on those alone (N=4 prompts x G=4
traces per step, the default profile's budgets), probing the same problems (8 answers each, same seed)
before the first step and every `--probe-every` steps. If the probe reward does not rise here, the loop
or the method is broken; if it rises here but not on the full training set, the broad run is short of
samples or steps. Prints the probe table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from budgetlab.data import read_split  # noqa: E402
from budgetlab.models import load_run_adapter, run_adapter_dir  # noqa: E402
from budgetlab.pipeline import load_params  # noqa: E402
from budgetlab.probe import probe_rows  # noqa: E402
from budgetlab.train import RLConfig, train_rl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a run folder whose 01 stage is done (adapters/warmstart)")
    ap.add_argument("--method", default="grpo", choices=["grpo", "drgrpo", "brpo", "ibpo"])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--probe-every", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    try:
        run_adapter_dir(run)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    params = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else load_params("default")
    train_rows, _ = read_split(run)
    rows = probe_rows(train_rows, args.problems, seed=args.seed)
    cfg = RLConfig(method=args.method, steps=args.steps, prompts_per_step=min(4, len(rows)), generations=4,
                   budgets=list(params["TRAIN_BUDGETS"]), max_summary=int(params["MAX_SUMMARY"]), lr=args.lr,
                   probe_every=args.probe_every, probe_size=len(rows), probe_samples=8, seed=args.seed).validate()
    model, tok = load_run_adapter(run, params)
    with tempfile.TemporaryDirectory() as out:
        train_rl(model, tok, rows, cfg, out)
        probes = pd.read_csv(Path(out) / "probe.csv")
    print(probes.round(3).to_string(index=False))
    first, last = probes.iloc[0], probes.iloc[-1]
    print(json.dumps({"method": args.method, "problems": len(rows), "steps": args.steps, "lr": args.lr,
                      "probe_reward_start": float(first["probe_reward"]), "probe_reward_end": float(last["probe_reward"]),
                      "probe": probes.to_dict("records")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
