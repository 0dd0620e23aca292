"""Tests for budgetlab.data: the formats, splits, length tables and data-prep parameters."""

from __future__ import annotations

from collections import Counter

import pytest

from budgetlab.data import (
    check_data_params,
    filter_levels,
    format_prompt,
    level_table,
    read_split,
    sft_target,
    train_eval_split,
    write_split,
)
from budgetlab.synthetic import make_synthetic

ROW = {"id": "x", "question": "Compute 7 + 5 - 3", "answer": "9", "solution": "7+5=12. 12-3=9.",
       "level": 2, "source": "synthetic"}


# --- formats ------------------------------------------------------------------------------

def test_sft_target_appends_think_close_cue_and_boxed_answer():
    # "7+5=12. 12-3=9." + "</think> Final answer: \boxed{9}"
    assert sft_target(ROW) == "7+5=12. 12-3=9.</think> Final answer: \\boxed{9}"


def test_sft_target_without_solution_is_only_the_close_and_answer():
    assert sft_target({**ROW, "solution": ""}) == "</think> Final answer: \\boxed{9}"


def test_format_prompt_is_short_and_ends_with_think():
    assert format_prompt("Compute 7 + 5 - 3") == "Question: Compute 7 + 5 - 3\nAnswer: <think>"


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
