"""EVAL_SETS: benchmarks kept apart from the training data, named, tagged, and refused when they overlap it."""

import pandas as pd
import pytest

from budgetlab import eval_sets
from budgetlab.evaluate import benchmark_scores


def test_entries_parse_with_a_default_name_from_the_file_or_hub_id():
    sets = eval_sets.parse_eval_sets(["math:data/math500.jsonl", "aime:HuggingFaceH4/aime_2024",
                                      "amc=aime:AI-MO/aimo-validation-amc"])
    assert sets == [{"name": "math500", "task": "math", "path": "data/math500.jsonl"},
                    {"name": "aime_2024", "task": "aime", "path": "HuggingFaceH4/aime_2024"},
                    {"name": "amc", "task": "aime", "path": "AI-MO/aimo-validation-amc"}]
    assert eval_sets.parse_eval_sets([]) == [] and eval_sets.parse_eval_sets(None) == []


@pytest.mark.parametrize("specs, words", [
    ("math:x.jsonl", "give a list of 'task:path' entries"),
    (["x.jsonl"], "entry 'x.jsonl' is not accepted"),
    (["testbed:x.jsonl"], "task one of ['gsm8k', 'math', 'aime', 'jsonl']"),
    ([3], "entry 3 is not accepted"),
    (["math:a/x.jsonl", "gsm8k:b/x.jsonl"], "names ['x', 'x'] repeat"),
])
def test_bad_entries_get_one_sentence(specs, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        eval_sets.parse_eval_sets(specs)


def test_questions_compare_after_unicode_case_and_whitespace_normalisation():
    assert eval_sets.normalise_question("  What IS\n 3\u00a0+ 1? ") == eval_sets.normalise_question("what is 3 + 1?")
    assert eval_sets.normalise_question("What is 3+1?") != eval_sets.normalise_question("What is 3 + 1?")


def test_an_eval_question_in_the_training_data_is_refused_naming_its_set():
    train = [{"question": "What is 2+2?"}, {"question": "Name a prime."}]
    eval_sets.check_no_overlap(train, [{"question": "What is 2+3?", "benchmark": "b"}])
    with pytest.raises(ValueError, match=r"evaluation set 'b' shares 1 question\(s\) .* e.g. 'WHAT is 2\+2\?'"):
        eval_sets.check_no_overlap(train, [{"question": "ok?", "benchmark": "a"},
                                           {"question": "WHAT is 2+2?", "benchmark": "b"}])


def test_real_benchmarks_load_tagged_with_prefixed_ids_and_stratified(shared_data):
    sets = eval_sets.parse_eval_sets([f"math:{shared_data / 'math500.jsonl'}", f"gsm8k:{shared_data / 'gsm8k_test.jsonl'}"])
    rows = eval_sets.load_eval_sets(sets, 10, seed=0)
    assert [sum(r["benchmark"] == b for r in rows) for b in ("math500", "gsm8k_test")] == [10, 10]
    assert all(r["id"].startswith(r["benchmark"] + "/") for r in rows) and len({r["id"] for r in rows}) == 20
    assert len({r["level"] for r in rows if r["benchmark"] == "math500"}) == 5  # MATH-500's five levels, stratified


def test_split_trains_on_the_task_and_evaluates_on_the_sets_only(shared_data):
    sets = eval_sets.parse_eval_sets([f"math:{shared_data / 'math500.jsonl'}"])
    train, ev = eval_sets.split("gsm8k", str(shared_data / "gsm8k_test.jsonl"), [1, 2, 3, 4, 5, 6], 30, 8, sets)
    assert len(train) == 30 and len(ev) == 8 and all(r["source"] == "gsm8k" for r in train)
    assert {r["benchmark"] for r in ev} == {"math500"}
    # every drawn eval row is in the training file, so all 8 are named
    with pytest.raises(ValueError, match=r"evaluation set 'math500' shares 8 question\(s\)"):
        eval_sets.split("math", str(shared_data / "math500.jsonl"), [1, 2, 3, 4, 5], 30, 8, sets)


def test_benchmark_scores_average_the_sets_unweighted():
    # model m: set a (2 problems) anytime .5 and 1 -> .75; set b (1 problem) 0 -> average (.75 + 0) / 2
    df = pd.DataFrame([{"model": "m", "id": i, "sample": 0, "budget": b, "correct": c, "benchmark": s, "level": 1,
                        "n_thinking": 3, "formatted": True}
                       for i, s, cs in (("a1", "a", (0, 1)), ("a2", "a", (1, 1)), ("b1", "b", (0, 0)))
                       for b, c in zip((4, 8), cs)])
    scores = benchmark_scores(df)["m"]
    assert scores["a"] == pytest.approx(0.75) and scores["b"] == 0.0 and scores["average"] == pytest.approx(0.375)
