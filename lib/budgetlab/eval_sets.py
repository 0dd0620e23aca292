"""Evaluation benchmarks kept apart from the training data, as the seed papers run them.

AnytimeReasoner trains on one set (DeepScaleR-style training data) and reports anytime accuracy on several test
sets (AIME2024, AMC2022, MATH-500, Minerva Math, OlympiadBench) and their average. `EVAL_SETS` says which: each
entry is `task:path` or `name=task:path`, with `task` one of the real loaders (gsm8k, math, aime, jsonl) and
`path` a .jsonl file or a hub id. With `EVAL_SETS` empty the evaluation rows are held out of the training data,
as before. Every evaluation row carries its `benchmark` and an id prefixed by it, so ids stay unique across sets.
A run whose evaluation questions also appear in its training data (compared as normalised text) is refused.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Sequence

from budgetlab.synthetic import GENERATED

READ_TASKS = ("gsm8k", "math", "aime", "jsonl")  # the loaders a benchmark may name (generated tasks hold no test set)
_SPEC = re.compile(r"^(?:(?P<name>[A-Za-z0-9][\w.-]*)=)?(?P<task>[a-z0-9]+):(?P<path>.+)$")


def parse_eval_sets(specs: Sequence[str] | None) -> list[dict]:
    """[{name, task, path}] from EVAL_SETS entries `task:path` or `name=task:path`; one sentence per bad entry.

    The name defaults to the file's stem or the hub id's last part; names must differ."""
    if specs is None or specs == "":
        return []
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise ValueError(f"EVAL_SETS={specs!r} is not accepted; give a list of 'task:path' entries, e.g. "
                         "['math:data/math500.jsonl'], or [] to hold N_EVAL rows out of the training data.")
    sets = []
    for spec in specs:
        m = _SPEC.match(str(spec).strip()) if isinstance(spec, str) else None
        if m is None or m["task"] not in READ_TASKS:
            raise ValueError(f"EVAL_SETS entry {spec!r} is not accepted; use 'task:path' or 'name=task:path' with task "
                             f"one of {list(READ_TASKS)} and path a .jsonl file or a hub id.")
        path = m["path"].strip()
        name = m["name"] or (Path(path).stem if path.endswith(".jsonl") else path.rstrip("/").split("/")[-1])
        sets.append({"name": name, "task": m["task"], "path": path})
    names = [s["name"] for s in sets]
    if len(set(names)) < len(names):
        raise ValueError(f"EVAL_SETS names {names} repeat; give each set its own name with 'name=task:path'.")
    return sets


def normalise_question(text: str) -> str:
    """Question text compared for overlap: Unicode NFKC, lower case, runs of whitespace as one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).lower().split())


def check_no_overlap(train_rows: Sequence[dict], eval_rows: Sequence[dict]) -> None:
    """ValueError naming the benchmark, the count and one question if an eval question is also a training one."""
    seen = {normalise_question(r["question"]) for r in train_rows}
    shared: dict[str, list[str]] = {}
    for r in eval_rows:
        if normalise_question(r["question"]) in seen:
            shared.setdefault(r.get("benchmark", "eval"), []).append(r["question"])
    if shared:
        name, questions = next(iter(shared.items()))
        raise ValueError(f"evaluation set {name!r} shares {len(questions)} question(s) with the training data "
                         f"(normalised text), e.g. {questions[0][:80]!r}; train on other problems, or drop that set.")


def load_eval_sets(sets: Sequence[dict], n_eval: int | None, seed: int = 0) -> list[dict]:
    """Up to n_eval rows of each benchmark (stratified by level, as the held-out split; None: all), tagged with
    its name."""
    from budgetlab.data import train_eval_split
    from budgetlab.loaders import load_problems

    rows = []
    for s in sets:
        problems = load_problems(s["task"], s["path"], seed=seed)
        if n_eval is not None and len(problems) > n_eval:
            _, problems = train_eval_split(problems, n_eval, seed)
        rows += [{**r, "id": f"{s['name']}/{r['id']}", "benchmark": s["name"]} for r in problems]
    return rows


def split(task: str, data_path: str, levels: Sequence[int], n_train: int, n_eval: int, sets: Sequence[dict],
          seed: int = 0, data_split: str | None = None) -> tuple[list[dict], list[dict]]:
    """(train, eval) under the seeds' protocol: n_train rows of the task's data (stratified by level) and n_eval
    of each benchmark; refused if any benchmark question is in the task's data at all (not just the drawn rows)."""
    from budgetlab.data import train_eval_split

    pool = training_rows(task, data_path, levels, n_train, seed, data_split)
    eval_rows = load_eval_sets(sets, n_eval, seed)
    check_no_overlap(pool, eval_rows)
    if len(pool) > n_train:  # the complement of a stratified hold-out of the rest is a stratified draw
        pool, _ = train_eval_split(pool, len(pool) - n_train, seed)
    return pool, eval_rows


def training_rows(task: str, data_path: str, levels: Sequence[int], n_train: int, seed: int,
                  data_split: str | None = None) -> list[dict]:
    """Every training problem the run may draw from: the task's source (a hub id's `data_split`, default the
    loader's) filtered by LEVELS; n_train rows for a generated task."""
    from budgetlab.data import filter_levels
    from budgetlab.loaders import load_problems

    if task in GENERATED:
        return GENERATED[task](n_train, levels, seed)
    return filter_levels(load_problems(task, data_path, seed=seed, split=data_split), levels)
