"""Tests for budgetlab.data: the synthetic task, the formats, the loaders, splits and length tables."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from budgetlab.data import (
    UNKNOWN_LEVEL,
    check_data_params,
    filter_levels,
    format_prompt,
    level_table,
    load_aime,
    load_gsm8k,
    load_math,
    load_problems,
    looks_like_hub_id,
    make_synthetic,
    parse_level,
    read_split,
    sft_target,
    train_eval_split,
    write_split,
)

ROW = {"id": "x", "question": "Compute 7 + 5 - 3", "answer": "9", "solution": "7+5=12. 12-3=9.",
       "level": 2, "source": "synthetic"}


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _evaluate(question: str) -> int:
    """Left-to-right + / - evaluation written independently of the generator."""
    tokens = question.removeprefix("Compute ").split()
    total = int(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        total = total + int(operand) if op == "+" else total - int(operand)
    return total


# --- formats ------------------------------------------------------------------------------

def test_sft_target_appends_think_close_cue_and_boxed_answer():
    # "7+5=12. 12-3=9." + "</think> Final answer: \boxed{9}"
    assert sft_target(ROW) == "7+5=12. 12-3=9.</think> Final answer: \\boxed{9}"


def test_sft_target_without_solution_is_only_the_close_and_answer():
    assert sft_target({**ROW, "solution": ""}) == "</think> Final answer: \\boxed{9}"


def test_format_prompt_is_short_and_ends_with_think():
    assert format_prompt("Compute 7 + 5 - 3") == "Question: Compute 7 + 5 - 3\nAnswer: <think>"


# --- synthetic task -----------------------------------------------------------------------

def test_make_synthetic_is_deterministic_by_seed():
    assert make_synthetic(60, seed=3) == make_synthetic(60, seed=3)
    assert make_synthetic(60, seed=3) != make_synthetic(60, seed=4)


def test_make_synthetic_balances_levels_within_one():
    counts = Counter(r["level"] for r in make_synthetic(63, seed=0))
    # 63 = 6 * 10 + 3: three levels get 11, three get 10
    assert sorted(counts) == [1, 2, 3, 4, 5, 6]
    assert sorted(counts.values()) == [10, 10, 10, 11, 11, 11]


def test_make_synthetic_answers_equal_the_independently_evaluated_expression():
    for row in make_synthetic(300, seed=1):
        assert row["answer"] == str(_evaluate(row["question"]))


def test_make_synthetic_solution_has_one_step_per_level_chained_on_the_previous_result():
    for row in make_synthetic(120, seed=2):
        steps = re.findall(r"(\d+)([+-])(\d+)=(\d+)\.", row["solution"])
        assert len(steps) == row["level"] == (len(row["question"].split()) - 2) // 2
        for (a, op, b, c), nxt in zip(steps, steps[1:] + [(row["answer"],)]):
            assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
            assert nxt[0] == c  # the next step starts from this result


def test_make_synthetic_keeps_partial_results_small_and_non_negative():
    for row in make_synthetic(200, seed=5):
        results = [int(c) for c in re.findall(r"=(\d+)\.", row["solution"])]
        assert all(0 <= v <= 50 for v in results)


def test_make_synthetic_honours_requested_levels_and_distinct_questions():
    rows = make_synthetic(40, levels=(2, 5), seed=0)
    assert {r["level"] for r in rows} == {2, 5}
    assert len({r["question"] for r in rows}) == 40


def test_make_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n=0"):
        make_synthetic(0)
    with pytest.raises(ValueError, match="levels="):
        make_synthetic(10, levels=(0, 1))
    with pytest.raises(ValueError, match="levels="):
        make_synthetic(10, levels=())


def test_make_synthetic_refuses_more_distinct_problems_than_exist():
    # with operands 1..2 and results <= 2, level 1 has few distinct questions (1+1, 2-1, ...)
    with pytest.raises(ValueError, match="distinct level-1"):
        make_synthetic(50, levels=(1,), max_operand=2, max_result=2)


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


# --- splits -------------------------------------------------------------------------------

def test_train_eval_split_is_stratified_by_level_and_disjoint():
    rows = make_synthetic(120, seed=0)  # 20 per level
    train, eval_ = train_eval_split(rows, n_eval=30, seed=0)
    assert Counter(r["level"] for r in eval_) == {lv: 5 for lv in range(1, 7)}  # 30 / 6 levels
    assert len(train) == 90 and not {r["id"] for r in train} & {r["id"] for r in eval_}


def test_train_eval_split_is_proportional_for_unbalanced_levels():
    rows = [{"id": str(i), "level": 1 if i < 80 else 2} for i in range(100)]
    train, eval_ = train_eval_split(rows, n_eval=10, seed=1, n_train=45)
    # 80/20 of 10 -> 8 and 2; 80/20-ish of 45 from the remaining 72/18 -> 36 and 9
    assert Counter(r["level"] for r in eval_) == {1: 8, 2: 2}
    assert Counter(r["level"] for r in train) == {1: 36, 2: 9}


def test_train_eval_split_is_deterministic_by_seed():
    rows = make_synthetic(60, seed=0)
    assert train_eval_split(rows, 12, seed=4) == train_eval_split(rows, 12, seed=4)
    assert train_eval_split(rows, 12, seed=4)[1] != train_eval_split(rows, 12, seed=5)[1]


def test_train_eval_split_rejects_impossible_sizes():
    rows = make_synthetic(12, seed=0)
    with pytest.raises(ValueError, match="n_eval=12"):
        train_eval_split(rows, 12)
    with pytest.raises(ValueError, match="n_eval=0"):
        train_eval_split(rows, 0)
    with pytest.raises(ValueError, match="n_train=11"):
        train_eval_split(rows, 2, n_train=11)


def test_write_split_and_read_split_round_trip(tmp_path):
    train, eval_ = train_eval_split(make_synthetic(24, seed=0), 6)
    paths = write_split(tmp_path / "run", train, eval_)
    assert paths["train"] == tmp_path / "run" / "data" / "train.jsonl" and paths["eval"].is_file()
    assert read_split(tmp_path / "run") == (train, eval_)


def test_read_split_before_data_prep_says_which_notebook_to_run(tmp_path):
    with pytest.raises(ValueError, match="run notebooks/00_data_prep.ipynb"):
        read_split(tmp_path / "empty_run")


# --- tables and parameters ----------------------------------------------------------------

def test_level_table_counts_and_character_lengths_without_tokenizer():
    rows = [ROW, {**ROW, "id": "y", "level": 1, "solution": "1+1=2.", "answer": "2", "question": "Compute 1 + 1"}]
    table = level_table(rows).set_index("level")
    # level 1 target "1+1=2." (6) + "</think>" (8) + " Final" (6) + " answer:" (8) + " \boxed{2}" (10) = 38 chars
    assert table.loc[1, "count"] == 1 and table.loc[1, "target_chars_mean"] == 38
    assert table.loc[2, "question_chars_mean"] == len("Compute 7 + 5 - 3")


def test_level_table_uses_token_counts_with_a_tokenizer():
    def whitespace_tokenizer(texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}

    table = level_table([ROW], whitespace_tokenizer)
    # "7+5=12." "12-3=9.</think>" "Final" "answer:" "\boxed{9}": 5 whitespace-separated pieces
    assert table.loc[0, "target_tokens_mean"] == 5 and table.loc[0, "target_tokens_max"] == 5


def test_filter_levels_keeps_requested_levels_and_refuses_an_empty_result():
    rows = make_synthetic(12, seed=0)
    assert {r["level"] for r in filter_levels(rows, [1, 2])} == {1, 2}
    with pytest.raises(ValueError, match=r"data has levels \[1, 2, 3, 4, 5, 6\]"):
        filter_levels(rows, [9])


def test_check_data_params_resolves_good_values_and_rejects_bad_ones(tmp_path):
    ok = check_data_params("synthetic", "", 480, 48, [1, 2, 3], 0)
    assert ok == {"task": "synthetic", "data_path": "", "n_train": 480, "n_eval": 48, "levels": [1, 2, 3], "seed": 0}
    with pytest.raises(ValueError, match="TASK='mmlu'"):
        check_data_params("mmlu", "", 1, 1, [1], 0)
    with pytest.raises(ValueError, match="DATA_PATH='nowhere.jsonl'"):
        check_data_params("math", "nowhere.jsonl", 1, 1, [1], 0)
    with pytest.raises(ValueError, match="N_EVAL=0"):
        check_data_params("synthetic", "", 10, 0, [1], 0)
    with pytest.raises(ValueError, match="LEVELS="):
        check_data_params("synthetic", "", 10, 2, [1, 1], 0)
