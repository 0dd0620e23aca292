"""Did RL raise the reward, or did later steps draw easier prompts? A frozen baseline on the very same prompts.

    python scripts/frozen_baseline.py RUN_DIR [--steps 100] [--samples 4] [--out docs/rl_gain.png]

An RL step's reward is measured on the prompts that step drew, so a per-step curve mixes learning with how
hard those prompts were. Every method draws the same prompts at the same step (`train.step_prompts`), so
this script samples `--samples` answers from the *untrained* warm start (RUN_DIR/adapters/warmstart, the
run's precision for the generation copy, training temperature, largest training budget) to each prompt of
steps 1..`--steps`, and
subtracts that frozen reward from each method's per-step reward in RUN_DIR/rl/<method>/metrics.csv (or the
`--metrics LABEL=CSV` given). What is left, gain = trained − frozen on the same prompts, rises only if the
policy improved. SelfBudgeter is left out: it trains on its own subset with its own reward.

Writes RUN_DIR/rl/frozen_baseline.csv and, with --out, a figure (PNG and SVG); prints a table whose last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from budgetlab import plots  # noqa: E402
from budgetlab.anytime import evaluate_model  # noqa: E402
from budgetlab.data import read_split  # noqa: E402
from budgetlab.inference import generation_copy  # noqa: E402
from budgetlab.precision import dtype_name, use_bf16  # noqa: E402
from budgetlab.models import load_run_adapter, run_adapter_dir  # noqa: E402
from budgetlab.train import step_prompts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a run folder whose 01 stage is done and whose rl/<method>/metrics.csv exist")
    ap.add_argument("--steps", type=int, default=None, help="steps to cover (default: the longest metrics.csv)")
    ap.add_argument("--samples", type=int, default=4, help="answers per prompt from the frozen warm start")
    ap.add_argument("--metrics", nargs="*", default=None, metavar="LABEL=CSV",
                    help="per-step metrics to compare (default: every rl/<method>/metrics.csv but the budget-prompted "
                         "selfbudgeter and l1, whose prompts and rewards differ from the warm start's)")
    ap.add_argument("--out", default=None, help="figure path (PNG; an SVG is written beside it)")
    ap.add_argument("--seed", type=int, default=0, help="the sampling seed of the frozen answers")
    ap.add_argument("--reuse", action="store_true",
                    help="read RUN_DIR/rl/frozen_baseline.csv from an earlier call instead of sampling again")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    if args.samples < 1:
        print(f"--samples={args.samples} must be a positive integer.", file=sys.stderr)
        return 2
    if not args.reuse:
        try:
            run_adapter_dir(run)
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
    specs = args.metrics if args.metrics is not None else [
        f"{p.parent.name}={p}" for p in sorted((run / "rl").glob("*/metrics.csv")) if p.parent.name not in ("selfbudgeter", "l1")]
    runs = {}
    for spec in specs:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(path)
        if not path.is_file():
            print(f"{path} does not exist: give rl/<method>/metrics.csv files.", file=sys.stderr)
            return 2
        runs[label or path.parent.name] = pd.read_csv(path)
    if not runs:
        print(f"no rl/<method>/metrics.csv under {run}: run notebook 02 first.", file=sys.stderr)
        return 2
    params = json.loads((run / "config.json").read_text())
    steps = args.steps or max(len(m) for m in runs.values())
    saved = run / "rl" / "frozen_baseline.csv"
    if args.reuse:
        if not saved.is_file():
            print(f"--reuse: {saved} does not exist; run once without --reuse first.", file=sys.stderr)
            return 2
        frozen = pd.read_csv(saved)
    else:
        frozen = sample_frozen(run, params, steps, args.samples, args.seed)
        frozen.to_csv(saved, index=False)
    return compare(runs, frozen, args.out, args.samples)


def sample_frozen(run: Path, params: dict, steps: int, samples: int, seed: int) -> pd.DataFrame:
    """step, frozen_reward: the warm start's mean correctness over `samples` answers to each of the step's prompts."""
    import torch

    train_rows, _ = read_split(run)
    per_step = [step_prompts(train_rows, int(params["PROMPTS_PER_STEP"]), int(params.get("SEED", 0)), s)
                for s in range(steps)]
    unique = list({r["id"]: r for batch in per_step for r in batch}.values())

    model, tok = load_run_adapter(run, params)
    bf16 = use_bf16(params.get("PRECISION", "auto"), model)
    sampler = generation_copy(model, dtype_name(bf16))  # sample as the RL loop does
    torch.manual_seed(seed)
    df = evaluate_model(sampler.model if sampler else model, tok, unique, [int(params["TRAIN_BUDGETS"][-1])],
                        samples=samples, do_sample=True, max_summary=int(params["MAX_SUMMARY"]), name="frozen",
                        precision="bf16" if bf16 else "fp32")
    by_id = df.groupby("id")["correct"].mean()
    return pd.DataFrame({"step": range(1, steps + 1),
                         "frozen_reward": [float(by_id[[r["id"] for r in b]].mean()) for b in per_step]})


def compare(runs: dict[str, pd.DataFrame], frozen: pd.DataFrame, out: str | None, samples: int) -> int:
    """Print (and with `out`, draw) each run's reward, the frozen reward and their difference, by half."""
    rows, table = [], []
    for label, m in runs.items():
        j = m[["step", "reward"]].merge(frozen, on="step")
        j["gain"] = j["reward"] - j["frozen_reward"]
        rows.append(j.assign(method=label))
        half = len(j) // 2
        first, second = j.iloc[:half], j.iloc[half:]
        table.append({"method": label, "steps": len(j),
                      "reward_first_half": first["reward"].mean(), "reward_second_half": second["reward"].mean(),
                      "frozen_first_half": first["frozen_reward"].mean(),
                      "frozen_second_half": second["frozen_reward"].mean(),
                      "gain_first_half": first["gain"].mean(), "gain_second_half": second["gain"].mean(),
                      "gain_se": float(j["gain"].std(ddof=1) / max(half, 1) ** 0.5)})
    table = pd.DataFrame(table)
    print(table.round(3).to_string(index=False))
    if out:
        plots.setup_style()
        plots.save(plots.reward_gain_curves(pd.concat(rows, ignore_index=True)), Path(out).parent, Path(out).stem)
    print(json.dumps({"steps": len(frozen), "samples": samples, "methods": table.to_dict("records")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
