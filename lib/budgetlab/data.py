"""Data prep: the prompt/target formats, parameter checks, level filtering, splits, length tables.

A problem row is a plain dict {"id", "question", "answer", "solution", "level", "source"}, made by
synthetic.py or read by loaders.py: `solution` is step-by-step reference thinking ("" when the data
has none) and `level` an int difficulty (loaders.UNKNOWN_LEVEL = 0 when the data gives none). This
module turns rows into the canonical prompt and SFT target, splits them by level into a run's train
and eval files, and tabulates their lengths. Formats are documented in data/README.md.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from budgetlab.config import check_choice, read_jsonl, write_jsonl
from budgetlab.loaders import SOURCES, _numbered_jsonl, load_problems, looks_like_hub_id
from budgetlab.synthetic import GENERATED


# --- formats (the project's canonical prompt and SFT target) -------------------------------

def format_prompt(question: str) -> str:
    """Short plain prompt ending in `<think>` (no chat template: its system prompt costs ~30 tokens)."""
    return f"Question: {question}\nAnswer: <think>"


def sft_target(row: dict) -> str:
    """solution + "</think> Final answer: \\boxed{answer}", the completion SFT trains on (SPEC §6)."""
    return row["solution"] + "</think> Final answer: \\boxed{" + str(row["answer"]) + "}"


# --- data-prep parameters and the level filter ---------------------------------------------

def check_data_params(task: str, data_path: str, n_train: int, n_eval: int, levels: Sequence[int],
                      seed: int) -> dict:
    """Validate the data-prep parameters before any work; returns them resolved as a dict."""
    check_choice("TASK", task, SOURCES)
    data_path = str(data_path or "")
    if task not in GENERATED and not (Path(data_path).is_file() or looks_like_hub_id(data_path)):
        raise ValueError(f"DATA_PATH={data_path!r} is neither an existing .jsonl file nor a hub id 'org/name' "
                         f"(TASK={task!r} reads it).")
    for name, value in (("N_TRAIN", n_train), ("N_EVAL", n_eval)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is not accepted; use a positive integer.")
    levels = list(levels)
    if not levels or any(not isinstance(v, int) or v < 0 for v in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"LEVELS={levels!r} is not accepted; use distinct integers >= 0 "
                         "(0 = unknown level), e.g. [1, 2, 3].")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"SEED={seed!r} is not accepted; use a non-negative integer.")
    return {"task": task, "data_path": data_path if task not in GENERATED else "", "n_train": n_train,
            "n_eval": n_eval, "levels": levels, "seed": seed}


def check_data_file(task: str, data_path: str, levels: Sequence[int], n_eval: int) -> None:
    """Read a run's input data before any work: every row parses and has its fields (loaders' file:line
    sentences), ids are unique, every level in LEVELS has rows, and enough remain for N_EVAL plus training.
    A hub id is only checked to be reachable or cached (`check_hub_dataset`); generated tasks need nothing."""
    if task in GENERATED:
        return
    path = Path(str(data_path))
    if not path.is_file():
        check_hub_dataset(str(data_path))
        return
    rows = load_problems(task, str(path))  # ValueError "file:line: ..." on the first bad row, or "holds no rows"
    places = [where for where, _ in _numbered_jsonl(path)] if path.suffix == ".jsonl" else [str(path)] * len(rows)
    first: dict[str, str] = {}
    for row, where in zip(rows, places):
        if row["id"] in first:
            raise ValueError(f"{where}: id {row['id']!r} repeats {first[row['id']]}; every row needs its own id.")
        first[row["id"]] = where
    present = sorted({r["level"] for r in rows})
    for lv in levels:
        if lv not in present:
            raise ValueError(f"LEVELS={list(levels)} asks for level {lv}, but {path} has no row of it; "
                             f"its levels are {present}.")
    kept = len(filter_levels(rows, levels)) if levels else len(rows)  # no LEVELS (a real-data check): every row
    if kept <= n_eval:
        raise ValueError(f"{path} has {kept} rows at LEVELS={list(levels)}; N_EVAL={n_eval} needs at least "
                         f"{n_eval + 1} (one or more left to train on).")


def check_hub_dataset(hub_id: str, timeout: float = 10.0) -> None:
    """A hub dataset id is usable if the hub answers for it or a copy is cached here; else one sentence."""
    import os

    from huggingface_hub import HfApi, scan_cache_dir

    try:
        HfApi().dataset_info(hub_id, timeout=timeout)
        return
    except Exception as e:  # offline, unknown id, gated: whatever the hub says, a cached copy may still serve
        reason = type(e).__name__
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    if any(datasets_cache.glob(hub_id.replace("/", "___") + "*")):
        return
    try:
        if any(r.repo_id == hub_id and r.repo_type == "dataset" for r in scan_cache_dir().repos):
            return
    except Exception:  # no hub cache folder at all
        pass
    raise ValueError(f"DATA_PATH={hub_id!r} is a hub id, but the hub did not answer for it ({reason}) and no copy "
                     "is cached here; pass a local .jsonl file, or fetch the dataset where the hub is reachable.")


def filter_levels(rows: list[dict], levels: Sequence[int]) -> list[dict]:
    """Rows whose level is in levels; ValueError naming the levels present when none is left."""
    kept = [r for r in rows if r["level"] in set(levels)]
    if not kept:
        raise ValueError(f"no rows have a level in {list(levels)}; the data has levels {sorted({r['level'] for r in rows})}.")
    return kept


# --- splits --------------------------------------------------------------------------------

def _stratified_take(groups: dict[int, list[dict]], n: int) -> dict[int, int]:
    """How many rows to take per level: n split in proportion to group sizes (largest remainder)."""
    total = sum(len(g) for g in groups.values())
    quota = {lv: n * len(g) / total for lv, g in groups.items()}
    take = {lv: int(q) for lv, q in quota.items()}
    by_remainder = sorted(groups, key=lambda lv: (-(quota[lv] - take[lv]), lv))
    for lv in by_remainder[: n - sum(take.values())]:
        take[lv] += 1
    return take


def train_eval_split(rows: list[dict], n_eval: int, seed: int = 0,
                     n_train: int | None = None) -> tuple[list[dict], list[dict]]:
    """(train, eval) with each level's share of eval (and of train when n_train is given) equal to its share of rows."""
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} rows cannot be split; train_eval_split needs at least 2.")
    if not isinstance(n_eval, int) or not 1 <= n_eval < len(rows):
        raise ValueError(f"n_eval={n_eval!r} is not accepted; use an integer in [1, {len(rows) - 1}] for {len(rows)} rows.")
    n_train_max = len(rows) - n_eval
    if n_train is not None and (not isinstance(n_train, int) or not 1 <= n_train <= n_train_max):
        raise ValueError(f"n_train={n_train!r} is not accepted; use an integer in [1, {n_train_max}] "
                         f"({len(rows)} rows minus n_eval={n_eval}).")
    rng = random.Random(seed)
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["level"], []).append(i)
    for idx in groups.values():
        rng.shuffle(idx)
    eval_take = _stratified_take(groups, n_eval)
    eval_idx = {i for lv, idx in groups.items() for i in idx[: eval_take[lv]]}
    rest = {lv: idx[eval_take[lv]:] for lv, idx in groups.items()}
    train_take = _stratified_take(rest, n_train if n_train is not None else n_train_max)
    train_idx = {i for lv, idx in rest.items() for i in idx[: train_take[lv]]}
    return [r for i, r in enumerate(rows) if i in train_idx], [r for i, r in enumerate(rows) if i in eval_idx]


def split_paths(run_dir) -> dict[str, Path]:
    """{"train": run_dir/data/train.jsonl, "eval": run_dir/data/eval.jsonl}."""
    return {name: Path(run_dir) / "data" / f"{name}.jsonl" for name in ("train", "eval")}


def write_split(run_dir, train: list[dict], eval: list[dict]) -> dict[str, Path]:
    """Atomically write run_dir/data/train.jsonl and eval.jsonl; returns their paths."""
    paths = split_paths(run_dir)
    write_jsonl(paths["train"], train)
    write_jsonl(paths["eval"], eval)
    return paths


def read_split(run_dir) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows written by write_split; ValueError if 00_data_prep has not run for run_dir."""
    paths = split_paths(run_dir)
    for path in paths.values():
        if not path.is_file():
            raise ValueError(f"{path} does not exist; run notebooks/00_data_prep.ipynb with RUN_DIR={str(run_dir)!r} first.")
    return read_jsonl(paths["train"]), read_jsonl(paths["eval"])


# --- length tables -------------------------------------------------------------------------

def _lengths(texts: list[str], tokenizer) -> list[int]:
    """Token counts (no special tokens) with a Hugging Face tokenizer, else character counts."""
    if tokenizer is None:
        return [len(t) for t in texts]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def length_frame(rows: list[dict], tokenizer=None):
    """One row per problem: id, level, target_/question_/prompt_<unit>, unit = tokens with a tokenizer else chars."""
    import pandas as pd

    unit = "tokens" if tokenizer is not None else "chars"
    return pd.DataFrame({
        "id": [r["id"] for r in rows],
        "level": [r["level"] for r in rows],
        f"target_{unit}": _lengths([sft_target(r) for r in rows], tokenizer),
        f"question_{unit}": _lengths([r["question"] for r in rows], tokenizer),
        f"prompt_{unit}": _lengths([format_prompt(r["question"]) for r in rows], tokenizer),
    })


def level_table(rows: list[dict], tokenizer=None):
    """Per level: count, mean and max sft_target length, mean question and prompt length (tokens or chars)."""
    frame = length_frame(rows, tokenizer)
    unit = "tokens" if tokenizer is not None else "chars"
    grouped = frame.groupby("level")
    table = grouped.agg(count=("id", "size"), **{
        f"target_{unit}_mean": (f"target_{unit}", "mean"),
        f"target_{unit}_max": (f"target_{unit}", "max"),
        f"question_{unit}_mean": (f"question_{unit}", "mean"),
        f"prompt_{unit}_mean": (f"prompt_{unit}", "mean"),
    })
    return table.reset_index()
