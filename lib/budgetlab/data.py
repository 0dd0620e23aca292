"""Problems: the synthetic graded task, benchmark loaders, the prompt/target formats, splits.

A problem row is a plain dict {"id", "question", "answer", "solution", "level", "source"}:
`solution` is step-by-step reference thinking ("" when the data has none) and `level` an int
difficulty (UNKNOWN_LEVEL = 0 when the data gives none). Formats are documented in data/README.md.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Iterator, Sequence

from budgetlab.config import check_choice, read_jsonl, write_jsonl

SOURCES = ("synthetic", "gsm8k", "math", "aime", "jsonl")
DEFAULT_LEVELS = (1, 2, 3, 4, 5, 6)
DEFAULT_SYNTHETIC_N = 528  # 480 train + 48 eval, the default profile
UNKNOWN_LEVEL = 0  # level of rows whose data gives no difficulty (AIME, plain JSONL)
GSM8K_MAX_LEVEL = 6  # GSM8K level = number of solution lines, clipped to 1..6
ROW_KEYS = ("question", "answer", "solution", "level", "id")  # keys a column mapping may name
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".arrow")


# --- formats (the project's canonical prompt and SFT target) -------------------------------

def format_prompt(question: str) -> str:
    """Short plain prompt ending in `<think>` (no chat template: its system prompt costs ~30 tokens)."""
    return f"Question: {question}\nAnswer: <think>"


def sft_target(row: dict) -> str:
    """solution + "</think> Final answer: \\boxed{answer}", the completion SFT trains on (SPEC §6)."""
    return row["solution"] + "</think> Final answer: \\boxed{" + str(row["answer"]) + "}"


# --- the synthetic graded task ------------------------------------------------------------

def _synthetic_problem(level: int, rng: random.Random, max_operand: int, max_result: int) -> tuple[str, str, int]:
    """One chain of `level` + / - steps on 1..max_operand, every partial result in [0, max_result]."""
    value = rng.randint(1, max_operand)
    terms, steps = [str(value)], []
    for _ in range(level):
        ops = [op for op, ok in (("+", value < max_result), ("-", value > 0)) if ok]
        op = rng.choice(ops)
        b = rng.randint(1, min(max_operand, max_result - value if op == "+" else value))
        new = value + b if op == "+" else value - b
        terms.append(f"{op} {b}")
        steps.append(f"{value}{op}{b}={new}.")  # each step starts from the previous result
        value = new
    return "Compute " + " ".join(terms), " ".join(steps), value


def make_synthetic(n: int, levels: Sequence[int] = DEFAULT_LEVELS, seed: int = 0,
                   max_operand: int = 20, max_result: int = 50) -> list[dict]:
    """n distinct arithmetic problems, level L = L chained +/- steps, balanced over levels (±1), deterministic by seed."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not accepted; use a positive integer number of problems.")
    levels = list(levels)
    if not levels or len(set(levels)) != len(levels) or any(not isinstance(v, int) or v < 1 for v in levels):
        raise ValueError(f"levels={levels!r} is not accepted; use distinct positive integers such as [1, 2, 3, 4, 5, 6].")
    if max_operand < 1 or max_result < max_operand:
        raise ValueError(f"max_operand={max_operand}, max_result={max_result} are not accepted; "
                         "use 1 <= max_operand <= max_result.")
    rng = random.Random(seed)
    plan = [levels[i % len(levels)] for i in range(n)]
    rng.shuffle(plan)
    rows, seen = [], set()
    for i, level in enumerate(plan):
        for _ in range(1000):
            question, solution, answer = _synthetic_problem(level, rng, max_operand, max_result)
            if question not in seen:
                break
        else:
            raise ValueError(f"cannot make {plan.count(level)} distinct level-{level} problems; ask for fewer (n={n}).")
        seen.add(question)
        rows.append({"id": f"synthetic-s{seed}-{i:05d}", "question": question, "answer": str(answer),
                     "solution": solution, "level": level, "source": "synthetic"})
    return rows


# --- reading raw rows from a local JSONL file or the hub ----------------------------------

def looks_like_hub_id(text: str) -> bool:
    """True for `org/name` that is not a file name (so a mistyped local path never reaches the network)."""
    return bool(_HUB_ID.match(text)) and not text.lower().endswith(_FILE_SUFFIXES)


def _numbered_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """("file:line", row) for each non-blank line of a JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}.")
            yield f"{path}:{lineno}", row


def _raw_rows(path_or_id: str, split: str, config: str | None) -> Iterator[tuple[str, dict]]:
    """(location, row) pairs from an existing .jsonl file, else from the hub through `datasets`."""
    path = Path(path_or_id)
    if path.is_file() and path.suffix == ".jsonl":
        yield from _numbered_jsonl(path)
    elif path.exists():
        raise ValueError(f"{path_or_id!r} is not a .jsonl file; pass a JSON-lines file or a hub id like 'openai/gsm8k'.")
    elif looks_like_hub_id(path_or_id):
        import datasets  # only a hub id ever tries the network

        for i, row in enumerate(datasets.load_dataset(path_or_id, config, split=split)):
            yield f"{path_or_id}[{split}] row {i}", dict(row)
    else:
        raise ValueError(f"{path_or_id!r} is neither an existing .jsonl file nor a hub id of the form 'org/name'.")


def _default_columns(source: str) -> dict[str, str]:
    """Canonical key -> column name for each source (question and answer are required, the rest optional)."""
    if source == "gsm8k":
        return {"question": "question", "answer": "answer"}
    if source == "math":
        return {"question": "problem", "answer": "answer", "solution": "solution", "level": "level", "id": "unique_id"}
    if source == "aime":
        return {"question": "problem", "answer": "answer", "solution": "solution", "id": "id"}
    return {"question": "question", "answer": "answer", "solution": "solution", "level": "level", "id": "id"}


def _check_columns(columns: dict | None) -> dict[str, str]:
    """Validate a user column mapping {canonical key: column name}."""
    columns = dict(columns or {})
    for key, name in columns.items():
        check_choice("column mapping key", key, ROW_KEYS)
        if not isinstance(name, str) or not name:
            raise ValueError(f"columns[{key!r}]={name!r} is not accepted; use a column name (a non-empty string).")
    return columns


def parse_level(value, where: str = "") -> int:
    """Int level from 3, 3.0, "3" or "Level 3"; None, "" or "Level ?" -> UNKNOWN_LEVEL."""
    if value is None or isinstance(value, bool):
        return UNKNOWN_LEVEL
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        digits = re.findall(r"\d+", value)
        if len(digits) == 1:
            return int(digits[0])
        if not digits:
            return UNKNOWN_LEVEL
    raise ValueError(f"{where}: level {value!r} is not accepted; use an integer or text like 'Level 3'.")


def _gsm8k_parts(answer: str, where: str) -> tuple[str, str, int]:
    """GSM8K answer text -> (solution without <<calc>> notes, final number without commas, level = lines clipped 1..6)."""
    if "####" not in answer:
        raise ValueError(f"{where}: GSM8K answer has no final '#### N' line.")
    reasoning, final = answer.rsplit("####", 1)
    solution = re.sub(r"<<[^>]*>>", "", reasoning).strip()
    lines = [line for line in solution.splitlines() if line.strip()]
    return solution, final.strip().replace(",", ""), min(max(len(lines), 1), GSM8K_MAX_LEVEL)


def _load(source: str, path_or_id, split: str, limit: int | None, columns: dict | None,
          config: str | None) -> list[dict]:
    """Read, map columns, convert and validate rows of a real dataset; errors name file:line."""
    if not path_or_id:
        raise ValueError(f"source={source!r} needs path_or_id: a .jsonl file or a hub id like 'org/name'.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} is not accepted; use a positive integer or None.")
    user = _check_columns(columns)
    mapping = {**_default_columns(source), **user}
    required = {"question", "answer", *user}
    rows = []
    for i, (where, raw) in enumerate(_raw_rows(str(path_or_id), split, config)):
        if limit is not None and i >= limit:
            break
        missing = [mapping[k] for k in ROW_KEYS if k in required and mapping[k] not in raw]
        if missing:
            raise ValueError(f"{where}: missing column {missing[0]!r}; available columns: {sorted(raw)}.")
        get = {k: raw.get(col) for k, col in mapping.items()}
        question = str(get["question"] or "").strip()
        answer = "" if get["answer"] is None else str(get["answer"]).strip()
        solution, level = str(get.get("solution") or "").strip(), parse_level(get.get("level"), where)
        if source == "gsm8k":
            solution, answer, lines = _gsm8k_parts(answer, where)
            level = level if "level" in user else lines
        for field, text in (("question", question), ("answer", answer)):
            if not text:
                raise ValueError(f"{where}: empty {field}; every row needs a question and an answer.")
        row_id = get.get("id")
        rows.append({"id": str(row_id) if row_id not in (None, "") else f"{source}-{i:05d}", "question": question,
                     "answer": answer, "solution": solution, "level": level, "source": source})
    if not rows:
        raise ValueError(f"{path_or_id!r} holds no rows.")
    return rows


def load_gsm8k(path_or_id, split: str = "test", limit: int | None = None, columns: dict | None = None,
               config: str | None = "main") -> list[dict]:
    """GSM8K rows: answer = number after '####' (commas removed), solution = the text before it, level = its lines (1..6)."""
    return _load("gsm8k", path_or_id, split, limit, columns, config)


def load_math(path_or_id, split: str = "test", limit: int | None = None, columns: dict | None = None,
              config: str | None = None) -> list[dict]:
    """MATH / MATH-500 rows from columns problem, solution, answer, level ("Level 3" or 3), unique_id."""
    return _load("math", path_or_id, split, limit, columns, config)


def load_aime(path_or_id, split: str = "train", limit: int | None = None, columns: dict | None = None,
              config: str | None = None) -> list[dict]:
    """AIME/AMC-style rows from columns problem, answer (solution if present); level = UNKNOWN_LEVEL."""
    return _load("aime", path_or_id, split, limit, columns, config)


def load_problems(source: str, path_or_id=None, columns: dict | None = None, limit: int | None = None,
                  seed: int = 0, levels: Sequence[int] = DEFAULT_LEVELS, split: str | None = None,
                  config: str | None = None) -> list[dict]:
    """Problems from one source in SOURCES; synthetic makes `limit` (default 528) rows, the rest read path_or_id."""
    check_choice("source", source, SOURCES)
    if source == "synthetic":
        return make_synthetic(limit or DEFAULT_SYNTHETIC_N, levels, seed)
    kwargs = {k: v for k, v in (("split", split), ("config", config)) if v is not None}
    loader = {"gsm8k": load_gsm8k, "math": load_math, "aime": load_aime}.get(source)
    if loader is None:
        return _load("jsonl", path_or_id, split or "train", limit, columns, config)
    return loader(path_or_id, limit=limit, columns=columns, **kwargs)


def check_data_params(task: str, data_path: str, n_train: int, n_eval: int, levels: Sequence[int],
                      seed: int) -> dict:
    """Validate the data-prep parameters before any work; returns them resolved as a dict."""
    check_choice("TASK", task, SOURCES)
    data_path = str(data_path or "")
    if task != "synthetic" and not (Path(data_path).is_file() or looks_like_hub_id(data_path)):
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
    return {"task": task, "data_path": data_path if task != "synthetic" else "", "n_train": n_train,
            "n_eval": n_eval, "levels": levels, "seed": seed}


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
