"""Pooling a sweep's seeds into one effects table: the `study` profile's answer to "is it the seed?".

Every run of a seed sweep evaluates its own problems (00 draws them from SEED) with its own trained adapters.
Pooling stacks the runs' evaluation tables with each problem id prefixed by its seed, so a (seed, problem)
pair is one unit of the paired bootstrap in `budgetlab.stats`, and recomputes every claim on the stack. Each
row also lists the difference in each seed alone, so a reader sees the seed-to-seed spread the interval
does not model: with three seeds a bootstrap over seeds as clusters has only ten distinct resamples, so the
pooled interval covers the choice of evaluation problems within the seeds run, not the choice of seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from budgetlab.config import atomic_write_json
from budgetlab.stats import CLAIMS, TESTBED_CLAIMS, effects_table


def _seed_of(run: Path) -> int:
    return int(json.loads((run / "config.json").read_text()).get("SEED", 0))


def _task_of(run: Path) -> str:
    return str(json.loads((run / "config.json").read_text()).get("TASK", "synthetic"))


def _stacked(runs: Sequence[Path], name: str) -> pd.DataFrame | None:
    """eval/<name> of every run, ids prefixed with the run's seed; None when a run lacks the file."""
    parts = []
    for run in runs:
        path = run / "eval" / name
        if not path.is_file():
            return None
        df = pd.read_csv(path)
        parts.append(df.assign(id=f"s{_seed_of(run)}:" + df["id"].astype(str)))
    return pd.concat(parts, ignore_index=True)


def pool_runs(runs: Sequence[str | Path], *, n_resamples: int = 1999, seed: int = 0) -> dict:
    """The effects table over the runs' stacked evaluations, each row with its per-seed differences.

    `runs` are finished run directories of one profile that differ in SEED (checked: seeds must be distinct
    and every run must have eval/anytime.csv)."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise ValueError(f"pooling needs at least 2 runs; got {len(runs)}.")
    seeds = [_seed_of(r) for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"runs {[str(r) for r in runs]} repeat a seed ({seeds}); pool runs of distinct seeds.")
    missing = [str(r) for r in runs if not (r / "eval" / "anytime.csv").is_file()]
    if missing:
        raise ValueError(f"{missing} have no eval/anytime.csv; finish their 03_anytime_eval stage first.")
    claims = CLAIMS + (TESTBED_CLAIMS if {_task_of(r) for r in runs} == {"testbed"} else ())
    df, votes = _stacked(runs, "anytime.csv"), _stacked(runs, "self_consistency_votes.csv")
    effects = effects_table(df, votes, n_resamples=n_resamples, seed=seed, claims=claims)
    for row in effects:  # the same claim in each seed alone: the spread the pooled interval does not model
        row["per_seed"] = {}
        for s in seeds:
            one = effects_table(df[df["id"].str.startswith(f"s{s}:")],
                                None if votes is None else votes[votes["id"].str.startswith(f"s{s}:")],
                                n_resamples=n_resamples, seed=seed,
                                claims=tuple(c for c in claims if c.claim == row["claim"]))
            row["per_seed"][s] = one[0]["difference"] if one else float("nan")
    return {"runs": [str(r) for r in runs], "seeds": seeds, "n_units": int(df["id"].nunique()), "effects": effects}


def markdown(pooled: dict) -> str:
    """The pooled effects as a Markdown table: claim, pooled difference [interval], per seed, verdict."""
    seeds = pooled["seeds"]
    lines = ["| claim | pooled difference [95% interval] | " + " | ".join(f"seed {s}" for s in seeds)
             + " | threshold | verdict |", "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for r in pooled["effects"]:
        per = " | ".join(f"{r['per_seed'][s]:+.3f}" for s in seeds)
        lines.append(f"| {r['claim']} | {r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {per} | "
                     f"{r['direction']} {r['threshold']:g} | {r['verdict']} |")
    return "\n".join(lines)


def write_pooled(out_dir: str | Path, runs: Sequence[str | Path]) -> Path:
    """pooled.json and pooled.md in out_dir (the sweep folder) from `pool_runs`; returns the JSON path."""
    out_dir = Path(out_dir)
    pooled = pool_runs(runs)
    (out_dir / "pooled.md").write_text(markdown(pooled) + "\n")
    return atomic_write_json(out_dir / "pooled.json", pooled)
