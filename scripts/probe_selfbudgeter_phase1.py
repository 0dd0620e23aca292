"""How well do SelfBudgeter's declared budgets track difficulty after phase-1 SFT? A probe over SFT steps.

    python scripts/probe_selfbudgeter_phase1.py RUN_DIR [--problems 64] [--samples 4] [--steps 20,30,40] [--lr 1e-3]
    python scripts/probe_selfbudgeter_phase1.py RUN_DIR --adapters selfbudgeter_sft,selfbudgeter   # measure only

Starts from RUN_DIR's warm-start adapter (notebook 01), labels `--problems` training questions with the
shortest correct of `--samples` answers (greedy when 1), fine-tunes on `<budget>N</budget>` targets and,
after each listed number of steps, lets the model declare a budget for every held-out question
(greedy). Prints, per checkpoint, Spearman's correlation of the declared budget with the level and the
mean declared budget by level; the last line is JSON. `--adapters` skips the training and measures the
run's saved adapters instead (phase 1 alone: `selfbudgeter_sft`; after RL: `selfbudgeter`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from budgetlab.data import read_split  # noqa: E402
from budgetlab.evaluate import declared_tracking  # noqa: E402
from budgetlab.models import load_model  # noqa: E402
from budgetlab.rollout import HFRollout  # noqa: E402
from budgetlab.selfbudget import budget_labels, budget_sft_examples, budget_tag_prompts  # noqa: E402
from budgetlab.sft import SFTConfig, sft  # noqa: E402
from budgetlab.truncation import parse_budget_tag  # noqa: E402


def tracking(model, tok, held_out, rollout=None) -> dict:
    """Greedy declared budget for every held-out question -> Spearman with level, share declared, means by level."""
    prompts, spans = budget_tag_prompts(tok, [r["question"] for r in held_out], rollout or HFRollout(model, tok),
                                        do_sample=False)
    declared = [parse_budget_tag(tok.decode(p[a:b])) for p, (a, b) in zip(prompts, spans)]
    t = declared_tracking(pd.DataFrame({"level": [r["level"] for r in held_out], "budget": 1, "declared": declared,
                                        "n_thinking": 0.0}))
    return {"spearman_with_level": t["spearman_with_level"], "declared_share": t["declared_share"],
            "mean_declared_by_level": {lv: round(v["declared"], 1) for lv, v in t["by_level"].items()}}


def describe(t: dict) -> str:
    return (f"Spearman {t['spearman_with_level']:.2f}, declared {t['declared_share']:.0%}, "
            f"mean declared by level {t['mean_declared_by_level']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", default="20,30,40", help="comma-separated SFT step counts to probe at")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-thinking", type=int, default=64)
    ap.add_argument("--adapters", default=None, help="comma-separated adapters of RUN_DIR to measure, no training")
    args = ap.parse_args(argv)
    if args.adapters:
        _, held_out = read_split(args.run_dir)
        results = []
        for name in args.adapters.split(","):
            model, tok = load_model("default", adapter="lora", lora_layers=10,
                                    adapter_path=os.path.join(args.run_dir, "adapters", name))
            t = tracking(model, tok, held_out)
            print(f"{name}: {describe(t)}", flush=True)
            results.append({"adapter": name, **t})
        print(json.dumps({"results": results}))
        return 0
    steps = sorted(int(s) for s in args.steps.split(","))
    model, tok = load_model("default", adapter="lora", lora_layers=10,
                            adapter_path=os.path.join(args.run_dir, "adapters", "warmstart"))
    train, held_out = read_split(args.run_dir)
    t0 = time.perf_counter()
    labels = budget_labels(model, tok, train[: args.problems], args.max_thinking, samples=args.samples)
    by_level = {}
    for lab in labels:
        if lab["correct"]:
            by_level.setdefault(lab["level"], []).append(lab["length"])
    print(f"labelled {sum(lab['correct'] for lab in labels)}/{len(labels)} questions in "
          f"{time.perf_counter() - t0:.0f} s; labels by level {dict(sorted(by_level.items()))}", flush=True)
    examples = budget_sft_examples(tok, train, labels)
    rollout, results = HFRollout(model, tok), []
    with tempfile.TemporaryDirectory() as out:
        for n in steps:
            sft(model, tok, examples, SFTConfig(steps=n, batch_size=args.batch, lr=args.lr, checkpoint_every=1),
                out, resume=True, progress=False)
            t = tracking(model, tok, held_out, rollout)
            print(f"after {n} steps: {describe(t)}", flush=True)
            results.append({"steps": n, **t})
    print(json.dumps({"problems": args.problems, "samples": args.samples, "lr": args.lr, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
