"""Does a run's warm start hold up on problems it has never seen? Greedy answers on fresh generated problems.

    python scripts/check_warmstart.py RUN_DIR [--adapters warmstart,selfbudgeter_sft] [--checkpoint PATH ...]
                                      [--per-level 60] [--levels 2,3,4] [--seed 7] [--out answers.csv]

Draws `--per-level` problems of each level of the run's generated task (testbed or synthetic) whose question
is in neither its training nor its eval split (the testbed's level 1 has 81 problems in all, so a default run
leaves about one), and answers them greedily at the run's EVAL_BUDGETS with each saved adapter and each SFT
checkpoint (`RUN_DIR/sft/<name>/checkpoints/step_N`), prompted as notebook 03 prompts that method (SelfBudgeter's
declare their own budget). Prints per model the accuracy by level at the largest budget (the testbed's
property (a) asks >= 0.8 at every level), the anytime curve, the short-style share, the mean thinking length,
the accuracy minus the first model's (paired bootstrap 95% interval over the same problems) and, where budgets
are declared, their Spearman correlation with the level (bootstrap interval). The last line is JSON. LOG.md
(2026-12-02) used it to ask whether the warm start could be trimmed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from budgetlab.anytime import evaluate_model  # noqa: E402
from budgetlab.checkpoint import load_checkpoint  # noqa: E402
from budgetlab.config import seed_everything  # noqa: E402
from budgetlab.data import read_split  # noqa: E402
from budgetlab.evaluate import declared_tracking  # noqa: E402
from budgetlab.methods import budget_tag  # noqa: E402
from budgetlab.models import load_run_adapter, load_run_model  # noqa: E402
from budgetlab.stats import paired_difference, per_problem, spearman_interval  # noqa: E402
from budgetlab.synthetic import GENERATED, fresh_problems  # noqa: E402


def report(df, name: str, declares: bool) -> dict:
    """One model's figures from its `evaluate_model` table; `declares`: the model was asked to declare budgets."""
    full = df[df["budget"] == df["budget"].max()]
    out = {"model": name, "n": len(full), "accuracy": float(full["correct"].mean()),
           "accuracy_by_level": {int(k): float(v) for k, v in full.groupby("level")["correct"].mean().items()},
           "curve": {int(k): float(v) for k, v in df.groupby("budget")["correct"].mean().items()},
           "short_style_share": None, "thinking": float(full["n_thinking"].mean())}
    if full["style_short"].notna().any():  # the testbed's planted choice; the chain's steps have no style
        out["short_style_share"] = float(full["style_short"].mean())
    if declares:  # rho None when no answer declared a parseable budget, or all declared the same
        tracking = declared_tracking(df)
        out.update(declared_share=tracking["declared_share"], spearman_with_level=None)
        if not math.isnan(tracking["spearman_with_level"]):
            d = full.dropna(subset=["declared"])
            out["spearman_with_level"] = spearman_interval(d["level"], d["declared"].astype(float))
    return out


def rounded(d: dict) -> dict:
    return {k: round(v, 3) for k, v in d.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a run folder whose 01 stage is done")
    ap.add_argument("--adapters", default="warmstart,selfbudgeter_sft", help="saved adapters, comma-separated ('' for none)")
    ap.add_argument("--checkpoint", action="append", default=[], help="an SFT checkpoint folder (repeatable)")
    ap.add_argument("--per-level", type=int, default=60)
    ap.add_argument("--levels", default=None, help="comma-separated levels (default: the run's LEVELS)")
    ap.add_argument("--seed", type=int, default=7, help="the fresh problems' seed")
    ap.add_argument("--out", default=None, help="write every answer's row (evaluate_model's table) to this CSV")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    config = run / "config.json"
    if not config.is_file():
        print(f"{config} is missing: give a run folder made by the pipeline (it records the run's parameters).",
              file=sys.stderr)
        return 2
    params = json.loads(config.read_text())
    task = params.get("TASK", "testbed")
    if task not in GENERATED:
        print(f"TASK={task!r}: fresh problems come only from a generated task ({', '.join(sorted(GENERATED))}).",
              file=sys.stderr)
        return 2
    adapters = [a for a in args.adapters.split(",") if a]
    for path in [run / "adapters" / a for a in adapters] + [Path(c) for c in args.checkpoint]:
        if not path.is_dir():
            print(f"{path} is missing: give adapters the run saved (ls {run / 'adapters'}) and checkpoint folders "
                  "such as RUN_DIR/sft/warmstart/checkpoints/step_000060.", file=sys.stderr)
            return 2
    levels = list(params["LEVELS"])
    if args.levels is not None:
        if not all(v.strip().isdigit() and int(v) >= 1 for v in args.levels.split(",")):
            print(f"--levels={args.levels!r} must be comma-separated positive integers, such as 2,3,4.", file=sys.stderr)
            return 2
        levels = [int(v) for v in args.levels.split(",")]
    if args.per_level < 1:
        print(f"--per-level={args.per_level} must be a positive integer (problems drawn per level).", file=sys.stderr)
        return 2
    train_rows, eval_rows = read_split(run)
    rows = fresh_problems(task, {r["question"] for r in train_rows + eval_rows}, args.per_level, levels, args.seed)
    print(f"{len(rows)} fresh {task} problems:", {lv: sum(r["level"] == lv for r in rows) for lv in levels})
    budgets = list(params["EVAL_BUDGETS"])
    kw = dict(max_summary=int(params["EVAL_MAX_SUMMARY"]), precision=params.get("PRECISION", "auto"),
              answer_rule=params.get("ANSWER_RULE", "last_boxed"), prompt=params.get("PROMPT", "plain"),
              progress=False)
    models = [(a, lambda a=a: load_run_adapter(run, params, a)) for a in adapters]
    for c in args.checkpoint:
        def from_checkpoint(c=c):
            model, tok = load_run_model(params)
            load_checkpoint(c, model)
            return model, tok
        models.append((f"{Path(c).parent.parent.name}/{Path(c).name}", from_checkpoint))
    results, tables = [], []
    for name, load in models:
        model, tok = load()
        model.eval()
        seed_everything(args.seed)
        tag = budget_tag(name.split("/")[0].removesuffix("_sft"), budgets[-1])  # as 03 prompts each method
        tables.append(evaluate_model(model, tok, rows, budgets, budget_tag=tag, name=name, **kw))
        r = report(tables[-1], name, tag == "self")
        if len(tables) > 1:  # paired over the same problems: this model's accuracy minus the first model's
            r["accuracy_minus_first"] = paired_difference(*(per_problem(t, n, "accuracy@max") for t, n in
                                                            ((tables[-1], name), (tables[0], models[0][0]))))
        results.append(r)
        short = "n/a" if r["short_style_share"] is None else f"{r['short_style_share']:.2f}"
        line = (f"{name}: accuracy {r['accuracy']:.3f}, by level {rounded(r['accuracy_by_level'])}, "
                f"curve {rounded(r['curve'])}, short-style share {short}, thinking {r['thinking']:.1f}")
        if "accuracy_minus_first" in r:
            line += f", accuracy minus {models[0][0]}'s {rounded(r['accuracy_minus_first'])}"
        if tag == "self":
            rho = r["spearman_with_level"]
            line += f", declared a budget {r['declared_share']:.2f}, Spearman with level {rho and rounded(rho)}"
        print(line, flush=True)
    if args.out:
        pd.concat(tables, ignore_index=True).to_csv(args.out, index=False)
    print(json.dumps({"run": str(run), "task": task, "seed": args.seed, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
