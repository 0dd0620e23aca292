"""Batch entry point: run the numbered notebooks 00 -> 04 with papermill into one run directory.

    python -m budgetlab.pipeline --profile smoke [--run-dir DIR] [-p KEY=VALUE ...] [--resume]
    python -m budgetlab.pipeline --profile default --sweep method=grpo,brpo SEED=0,1
    python -m budgetlab.pipeline --profile default --until 02_rl    # stop after training; --resume goes on
    python -m budgetlab.pipeline --profile study                    # its SEEDS, then their effects pooled

A profile is a flat YAML file in params/ (budgetlab.params checks every value before any model work). Each stage
leaves its executed notebook under RUN_DIR/notebooks/ and a marker under RUN_DIR/stages/, so --resume
skips finished stages and lets an interrupted training stage continue from its last checkpoint.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from budgetlab.config import (PROJECT_ROOT, atomic_write_json, atomic_write_text, check_choice, keep_freed_memory,
                              set_openmp_wait)
from budgetlab.params import load_params, parse_value, profiles
from budgetlab.precision import describe, model_shape, resolve
from budgetlab.rundir import OWNER_ENV, claim, release

NOTEBOOKS = PROJECT_ROOT / "notebooks"
STAGES = ("00_data_prep", "01_budget_sft", "02_rl", "03_anytime_eval", "04_report")


def run_precision(params: dict, run_dir: Path, resume: bool) -> dict:
    """The run's precision record (budgetlab.precision.resolve), measured once and kept in config.json, so a
    resumed run computes in the precision its first part chose."""
    old = run_dir / "config.json"
    if resume and old.exists() and "PRECISION_CHOICE" in (earlier := json.loads(old.read_text())):
        return earlier["PRECISION_CHOICE"]
    return resolve(params.get("PRECISION", "auto"), shape=model_shape(str(params.get("MODEL", "default"))))


def stage_runs(params: dict) -> list[tuple[str, str, dict]]:
    """(stage, output name, extra parameters) in order: 02_rl runs once per method."""
    runs = []
    for stage in STAGES:
        if stage == "02_rl":
            runs += [(stage, f"02_rl_{m}", {"METHOD": m}) for m in params["METHODS"]]
        else:
            runs.append((stage, stage, {}))
    return runs


@functools.lru_cache(maxsize=1)
def kernel_config():
    """Kernels talk to the pipeline over Unix sockets in a private folder (mode 0700, removed at exit) instead of
    TCP ports on localhost: only this user can reach them, and jupyter_client's unencrypted-TCP warning is moot."""
    from traitlets.config import Config

    folder = tempfile.mkdtemp(prefix="budgetlab-kernels-")  # created 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})


def run_stage(stage: str, name: str, params: dict, run_dir: Path, resume: bool) -> float:
    """Execute one notebook with the parameters it declares; returns seconds."""
    import papermill as pm

    src = NOTEBOOKS / f"{stage}.ipynb"
    declared = set(pm.inspect_notebook(str(src)))
    given = {k: v for k, v in {**params, "RUN_DIR": str(run_dir), "RESUME": resume}.items() if k in declared}
    out = run_dir / "notebooks" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(out), parameters=given, cwd=str(PROJECT_ROOT), kernel_name="python3",
                        progress_bar=False, config=kernel_config())
    return time.perf_counter() - t0


def export_report(run_dir: Path) -> Path:
    """report.html from the executed report notebook, inputs hidden, figures embedded."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(run_dir / "notebooks" / "04_report.ipynb", as_version=4)
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return atomic_write_text(run_dir / "report.html", html)


def append_index(run_dir: Path, params: dict, seconds: float) -> None:
    """One line per finished run in index.jsonl beside the run folder (results/ by default): where, what, how
    long, the anytime scores; a sweep's runs share their sweep folder's index."""
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {"run_dir": str(run_dir), "profile": params["PROFILE"], "seconds": round(seconds, 1),
           "params": {k: v for k, v in params.items() if k != "PROFILE"},
           "anytime_score": {m: v.get("anytime_score") for m, v in summary.get("methods", {}).items()}}
    index = run_dir.parent / "index.jsonl"
    old = index.read_text() if index.exists() else ""
    atomic_write_text(index, old + json.dumps(row) + "\n")


# what a run directory's data and adapters were made from: a resumed run must keep them
RUN_IDENTITY = ("MODEL", "ADAPTER", "LORA_R", "LORA_LAYERS", "TASK", "DATA_PATH", "N_TRAIN", "N_EVAL", "LEVELS", "SEED")


def check_resume(params: dict, run_dir: Path) -> None:
    """A resumed run keeps what its adapters and data were made from (an adapter trained on another base model
    would load into the wrong weights); one sentence naming the first key that changed."""
    old = run_dir / "config.json"
    if not old.is_file():
        return
    earlier = json.loads(old.read_text())
    for key in RUN_IDENTITY:
        if key in earlier and earlier[key] != params.get(key):
            raise ValueError(f"run directory {run_dir} was made with {key}={earlier[key]!r}; --resume must keep it "
                             f"(got {params.get(key)!r}), or start a new run directory.")


def check_inputs(params: dict) -> None:
    """Every input file read and checked before the first notebook (budgetlab.data.check_data_file): the task's
    DATA_PATH, each EVAL_SETS benchmark and the optional REAL_DATA, and no benchmark question among the training
    data (budgetlab.eval_sets); one sentence naming file and line, or the shared question, on the first fault."""
    from budgetlab import eval_sets
    from budgetlab.data import check_data_file

    task, path, levels = params.get("TASK", "synthetic"), params.get("DATA_PATH", ""), params["LEVELS"]
    sets = eval_sets.parse_eval_sets(params.get("EVAL_SETS"))
    check_data_file(task, path, levels, 0 if sets else params["N_EVAL"])
    for s in sets:
        check_data_file(s["task"], s["path"], (), 0)
    if sets:
        pool = eval_sets.training_rows(task, path, levels, params["N_TRAIN"], params.get("SEED", 0),
                                       params.get("DATA_SPLIT"))
        eval_sets.check_no_overlap(pool, eval_sets.load_eval_sets(sets, None))  # every row
    if params.get("REAL_DATA"):
        check_data_file(params.get("REAL_TASK", "gsm8k"), params["REAL_DATA"], (), 0)


def run(profile: str, run_dir: str | Path | None = None, overrides: dict | None = None, resume: bool = False,
        until: str | None = None) -> Path:
    """Run every stage of a profile into run_dir (default results/<profile>-<time>) and return it.

    `until` (a stage such as "02_rl") stops after that stage: no report, no index line; --resume goes on later."""
    params = load_params(profile, overrides)
    if until is not None:
        check_choice("until", until, list(STAGES))
    check_inputs(params)  # before the run directory exists: bad data leaves nothing behind
    run_dir = Path(run_dir or PROJECT_ROOT / "results" / f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if resume:
        check_resume(params, run_dir)
    claim(run_dir)  # one owner per run directory (budgetlab.rundir); our notebook kernels inherit the pid below
    os.environ[OWNER_ENV] = str(os.getpid())
    try:
        if not resume and (run_dir / "stages").exists():
            raise ValueError(f"run directory {run_dir} already holds a run; pass --resume to continue it or pick another.")
        return _run_stages(profile, params, run_dir, resume, until)
    finally:
        release(run_dir)


def _run_stages(profile: str, params: dict, run_dir: Path, resume: bool, until: str | None) -> Path:
    choice = run_precision(params, run_dir, resume)
    params = {**params, "PRECISION": choice["precision"]}  # the notebooks get the measured choice, not "auto"
    atomic_write_json(run_dir / "config.json", {**params, "PRECISION_CHOICE": choice})
    t_start, timings = time.perf_counter(), {}
    print(f"[budgetlab] profile={profile} run_dir={run_dir}", flush=True)
    print(f"[budgetlab] precision {describe(choice)}", flush=True)
    for stage, name, extra in stage_runs(params):
        if until is not None and STAGES.index(stage) > STAGES.index(until):
            break
        marker = run_dir / "stages" / f"{name}.done"
        if resume and marker.exists():
            print(f"[budgetlab] {name}: done earlier, skipped", flush=True)
            continue
        print(f"[budgetlab] {name}: running ...", flush=True)
        try:
            timings[name] = run_stage(stage, name, {**params, **extra}, run_dir, resume)
        except Exception as e:
            print(f"[budgetlab] {name}: FAILED after {time.perf_counter() - t_start:.0f}s total; "
                  f"see {run_dir / 'notebooks' / (name + '.ipynb')} ({type(e).__name__}); "
                  f"fix and re-run with --resume --run-dir {run_dir}", flush=True)
            raise
        atomic_write_text(marker, f"{timings[name]:.1f}\n")
        print(f"[budgetlab] {name}: {timings[name]:.0f}s (elapsed {time.perf_counter() - t_start:.0f}s)", flush=True)
    if until is not None and until != STAGES[-1]:
        print(f"[budgetlab] stopped after {until} as asked; continue with --resume --run-dir {run_dir}", flush=True)
        return run_dir
    export_report(run_dir)
    total = time.perf_counter() - t_start
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["stage_seconds"] = {**summary.get("stage_seconds", {}), **{k: round(v, 1) for k, v in timings.items()}}
    summary["wall_seconds"] = round(total, 1)
    summary["precision"] = choice
    atomic_write_json(run_dir / "summary.json", summary)
    append_index(run_dir, params, total)
    print(f"[budgetlab] done in {total:.0f}s: {run_dir / 'report.html'}", flush=True)
    return run_dir


def sweep_grid(specs: list[str]) -> list[dict]:
    """`method=grpo,brpo SEED=0,1` -> one override dict per combination (`method` sets METHODS=[m])."""
    axes = []
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"sweep axis {spec!r} must look like KEY=v1,v2.")
        key, values = spec.split("=", 1)
        axes.append([(key, parse_value(v)) for v in re.split(r",(?![^\[]*\])", values)])  # commas outside [..]
    out = []
    for combo in itertools.product(*axes):
        over = {}
        for key, value in combo:
            if key.lower() == "method":
                over["METHODS"] = [value]
            else:
                over[key.upper()] = value
        out.append(over)
    return out


def pool_seeds(base: Path, grid: list[dict], run_dirs: list[Path]) -> list[Path]:
    """For each group of a sweep's runs that differ only in SEED (two or more), pooled.json and pooled.md
    (budgetlab.study) in the sweep folder: `pooled` when the sweep varies SEED alone, else `pooled-<rest>`."""
    from budgetlab.study import write_pooled

    groups: dict[str, list[Path]] = {}
    for over, run_dir in zip(grid, run_dirs):
        rest = "-".join(f"{k.lower()}={v[0] if isinstance(v, list) else v}" for k, v in over.items() if k != "SEED")
        groups.setdefault(rest, []).append(run_dir)
    written = []
    for rest, runs in groups.items():
        if len(runs) < 2:
            continue
        out = base / (f"pooled-{rest}" if rest else "pooled")
        out.mkdir(parents=True, exist_ok=True)
        written.append(write_pooled(out, runs))
        print(f"[budgetlab] {len(runs)} seeds pooled into {out}:\n{(out / 'pooled.md').read_text()}", flush=True)
    return written


def main(argv: list[str] | None = None) -> int:
    openmp = set_openmp_wait()  # before any stage loads torch; the notebook kernels inherit it
    memory = keep_freed_memory()  # likewise
    ap = argparse.ArgumentParser(prog="python -m budgetlab.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default", help=f"one of {profiles()}")
    ap.add_argument("--run-dir", default=None, help="where the run goes (default results/<profile>-<time>)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    ap.add_argument("--resume", action="store_true", help="skip finished stages, continue training from checkpoints")
    ap.add_argument("--sweep", nargs="+", default=None, metavar="KEY=v1,v2", help="run every combination")
    ap.add_argument("--until", default=None, metavar="STAGE", help=f"stop after this stage, one of {list(STAGES)}")
    args = ap.parse_args(argv)
    print(f"[budgetlab] OpenMP waiting: {openmp}; freed memory kept: {memory}", flush=True)
    try:
        overrides = {}
        for item in args.param:
            if "=" not in item:
                raise ValueError(f"-p {item!r} must look like KEY=VALUE.")
            k, v = item.split("=", 1)
            overrides[k] = parse_value(v)
        seeds = load_params(args.profile, overrides).get("SEEDS")
        if seeds and not args.sweep:  # a profile that names its seeds (study) sweeps them
            args.sweep = ["SEED=" + ",".join(str(s) for s in seeds)]
        if args.sweep:
            grid = sweep_grid(args.sweep)
            for over in grid:  # validate every combination before the first one runs
                check_inputs(load_params(args.profile, {**overrides, **over}))
            base = Path(args.run_dir or PROJECT_ROOT / "results" / f"sweep-{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}")
            run_dirs = []
            for over in grid:
                tag = "-".join(f"{k.lower()}={v[0] if isinstance(v, list) else v}" for k, v in over.items())
                run_dirs.append(run(args.profile, base / tag, {**overrides, **over}, resume=args.resume,
                                    until=args.until))
            if args.until is None and any("SEED" in over for over in grid):
                pool_seeds(base, grid, run_dirs)
        else:
            load_params(args.profile, overrides)
            run(args.profile, args.run_dir, overrides, resume=args.resume, until=args.until)
    except ValueError as e:
        print(f"budgetlab: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
