"""Tests for budgetlab.loaders: the benchmark loaders, column mapping, bad input, load_problems."""

from __future__ import annotations

import json
import re

import pytest

from budgetlab.loaders import (
    UNKNOWN_LEVEL,
    load_aime,
    load_gsm8k,
    load_math,
    load_problems,
    looks_like_hub_id,
    parse_level,
)
from budgetlab.synthetic import make_synthetic


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- loaders on the real files ------------------------------------------------------------

def test_load_math_reads_500_rows_with_int_levels_one_to_five(shared_data):
    rows = load_math(shared_data / "math500.jsonl")
    assert len(rows) == 500
    assert {r["level"] for r in rows} == {1, 2, 3, 4, 5}
    assert all(r["question"] and r["answer"] and r["solution"] and r["source"] == "math" for r in rows)
    assert rows[0]["id"] == "test/precalculus/807.json"  # MATH-500's unique_id


def test_load_gsm8k_reads_1319_rows_with_integer_answers_and_clean_solutions(shared_data):
    rows = load_gsm8k(shared_data / "gsm8k_test.jsonl")
    assert len(rows) == 1319
    assert all(re.fullmatch(r"-?\d+", r["answer"]) for r in rows)
    assert all("<<" not in r["solution"] and "####" not in r["solution"] for r in rows)
    assert all(1 <= r["level"] <= 6 for r in rows)
    # first row: "... 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs ...\n... $<<9*2=18>>18 ...\n#### 18"
    assert rows[0]["answer"] == "18" and rows[0]["level"] == 2
    assert "16 - 3 - 4 = 9 duck eggs" in rows[0]["solution"]


def test_load_problems_limit_reads_only_the_first_rows(shared_data):
    rows = load_problems("gsm8k", shared_data / "gsm8k_test.jsonl", limit=5)
    assert [r["id"] for r in rows] == [f"gsm8k-{i:05d}" for i in range(5)]


def test_load_gsm8k_removes_commas_from_the_final_number(tmp_path):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "a <<2*3=6>>6\nb\nc\n#### 1,234"}])
    (row,) = load_gsm8k(path)
    # three solution lines -> level 3; "1,234" -> "1234"
    assert (row["answer"], row["solution"], row["level"]) == ("1234", "a 6\nb\nc", 3)


def test_load_gsm8k_without_final_line_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "just text"}])
    with pytest.raises(ValueError, match=r"g\.jsonl:1: GSM8K answer has no final"):
        load_gsm8k(path)


def test_load_aime_gives_unknown_level_and_string_answers(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"problem": "Find x.", "answer": 204}])
    (row,) = load_aime(path)
    assert (row["answer"], row["level"], row["solution"]) == ("204", UNKNOWN_LEVEL, "")


# --- column mapping and bad input ---------------------------------------------------------

def test_jsonl_column_mapping_renames_user_columns(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [
        {"q": "What is 2+2?", "gold": "4", "steps": "2+2=4.", "difficulty": "Level 2", "uid": "a1"},
    ])
    columns = {"question": "q", "answer": "gold", "solution": "steps", "level": "difficulty", "id": "uid"}
    (row,) = load_problems("jsonl", path, columns=columns)
    assert row == {"id": "a1", "question": "What is 2+2?", "answer": "4", "solution": "2+2=4.", "level": 2,
                   "source": "jsonl"}


def test_missing_column_names_file_line_column_and_available_ones(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"q": "a?", "gold": "1"}, {"text": "b?", "gold": "2"}])
    with pytest.raises(ValueError, match=r"p\.jsonl:2: missing column 'q'; available columns: \['gold', 'text'\]"):
        load_problems("jsonl", path, columns={"question": "q", "answer": "gold"})


def test_explicitly_mapped_optional_column_is_required(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"question": "a?", "answer": "1"}])
    with pytest.raises(ValueError, match=r"p\.jsonl:1: missing column 'steps'"):
        load_problems("jsonl", path, columns={"solution": "steps"})


def test_empty_answer_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "a?", "answer": "1"}\n\n{"question": "b?", "answer": ""}\n')
    # the blank line 2 is skipped, so the bad row is line 3
    with pytest.raises(ValueError, match=r"p\.jsonl:3: empty answer"):
        load_problems("jsonl", path)


def test_invalid_json_line_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "a?", "answer": "1"}\n{not json\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2: not valid JSON"):
        load_problems("jsonl", path)


def test_unknown_column_mapping_key_is_rejected(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"question": "a?", "answer": "1"}])
    with pytest.raises(ValueError, match="column mapping key='prompt'"):
        load_problems("jsonl", path, columns={"prompt": "question"})


def test_nonexistent_path_that_is_not_a_hub_id_is_rejected_without_network(tmp_path):
    with pytest.raises(ValueError, match="neither an existing .jsonl file nor a hub id"):
        load_math(tmp_path / "nowhere" / "math.jsonl")
    with pytest.raises(ValueError, match="neither an existing .jsonl file nor a hub id"):
        load_problems("jsonl", "missing.jsonl")


def test_existing_file_that_is_not_jsonl_is_rejected(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,answer\n")
    with pytest.raises(ValueError, match="is not a .jsonl file"):
        load_problems("jsonl", path)


def test_unknown_source_and_missing_path_are_rejected():
    with pytest.raises(ValueError, match="source='mmlu' is not accepted"):
        load_problems("mmlu")
    with pytest.raises(ValueError, match="needs path_or_id"):
        load_problems("math")


def test_hub_id_detection_accepts_org_name_and_refuses_file_names():
    assert looks_like_hub_id("openai/gsm8k") and looks_like_hub_id("HuggingFaceH4/MATH-500")
    assert not looks_like_hub_id("data/train.jsonl")
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("a/b/c") and not looks_like_hub_id("gsm8k")


def test_parse_level_reads_ints_and_level_text():
    assert [parse_level(3), parse_level("Level 4"), parse_level("2"), parse_level(5.0)] == [3, 4, 2, 5]
    assert parse_level(None) == parse_level("Level ?") == UNKNOWN_LEVEL
    with pytest.raises(ValueError, match="level 2.5"):
        parse_level(2.5, "f.jsonl:1")


def test_synthetic_source_goes_through_load_problems():
    assert load_problems("synthetic", limit=12, seed=7) == make_synthetic(12, seed=7)
