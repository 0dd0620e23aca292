"""Problem loaders: every source in SOURCES behind `load_problems`, and the real benchmarks' readers.

GSM8K, MATH/MATH-500, AIME-style and plain JSON-lines rows come from a local .jsonl file or, for a hub
id `org/name`, through `datasets` (the only path that may reach the network). Each source has a default
column mapping that a user mapping overrides; every row is converted to the plain problem dict
described in data.py and validated, and each error names the file and line (or hub row) it comes
from. The generated sources (the synthetic chain and the testbed) are made by synthetic.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, Sequence

from budgetlab.config import check_choice
from budgetlab.synthetic import DEFAULT_LEVELS, GENERATED

SOURCES = (*GENERATED, "gsm8k", "math", "aime", "jsonl")  # generated: synthetic (the chain), testbed
DEFAULT_SYNTHETIC_N = 528  # rows a generated task makes when no limit is given
UNKNOWN_LEVEL = 0  # level of rows whose data gives no difficulty (AIME, plain JSONL)
GSM8K_MAX_LEVEL = 6  # GSM8K level = number of solution lines, clipped to 1..6
ROW_KEYS = ("question", "answer", "solution", "level", "id")  # keys a column mapping may name
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".arrow")


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
    """Problems from one source in SOURCES; a generated task (synthetic, testbed) makes `limit` (default 528) rows,
    the rest read path_or_id."""
    check_choice("source", source, SOURCES)
    if source in GENERATED:
        return GENERATED[source](limit or DEFAULT_SYNTHETIC_N, levels, seed)
    kwargs = {k: v for k, v in (("split", split), ("config", config)) if v is not None}
    loader = {"gsm8k": load_gsm8k, "math": load_math, "aime": load_aime}.get(source)
    if loader is None:
        return _load("jsonl", path_or_id, split or "train", limit, columns, config)
    return loader(path_or_id, limit=limit, columns=columns, **kwargs)
