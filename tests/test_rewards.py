"""Tests for budgetlab.grading and budgetlab.rewards: extraction, grading, format, SelfBudgeter, L1, the TRL adapter."""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgetlab.grading import extract_boxed, first_boxed, graded_text, gsm8k_reference, is_correct, is_formatted
from budgetlab.rewards import (
    REWARDS,
    alpha_schedule,
    budget_match_score,
    correctness_reward,
    l1_max_reward,
    correctness_reward_parts,
    get_reward,
    l1_length_reward,
    parse_budget_tag,
    selfbudgeter_reward,
    selfbudgeter_reward_parts,
    trl_correctness_reward,
)

GOOD = "7+5=12. 12-3=9.</think> Final answer: \\boxed{9}"  # the SFT target shape of SPEC §6
BUDGETED = "<budget>100</budget>" + GOOD
WALL_BOUND_S = 10.0  # correctness contract (never hangs), not a speed claim


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- extract_boxed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{9}.", "9"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces kept whole
        ("\\boxed{1} then \\boxed{2}", "2"),  # the last one wins
        ("\\boxed {x+1}", "x+1"),  # space before the brace
        ("\\fbox{7}", "7"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces are not groups
        ("\\boxed{}", ""),
        ("\\boxed{\\boxed{3}}", "3"),  # the innermost opener is the last one
    ],
)
def test_extract_boxed_returns_the_content_of_the_last_box(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("text", ["no box here", "\\boxed{12", "\\boxed{1} \\boxed{2", "\\boxed 5", "", None, 42])
def test_extract_boxed_returns_none_when_absent_unbalanced_or_not_text(text):
    assert extract_boxed(text) is None


@pytest.mark.parametrize(
    "text",
    ["{" * 1_000_000, "\\boxed{" + "{" * 1_000_000, "\\boxed{" * 200_000, "\\boxed{" + "{" * 500_000 + "}" * 500_001],
)
def test_extract_boxed_is_linear_on_a_megabyte_of_braces(text):
    start = time.monotonic()
    extract_boxed(text)
    assert time.monotonic() - start < WALL_BOUND_S


# --- gsm8k_reference ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [("9*2=18\n#### 18", "18"), ("#### 1,450,000", "1450000"), ("#### -3", "-3"), ("#### 2\n#### 0.5", "0.5")],
)
def test_gsm8k_reference_takes_the_number_after_the_last_hashes(answer, expected):
    assert gsm8k_reference(answer) == expected


@pytest.mark.parametrize("answer", ["18", "#### x", None])
def test_gsm8k_reference_rejects_text_without_a_number_line(answer):
    with pytest.raises(ValueError, match="####"):
        gsm8k_reference(answer)


# --- is_correct ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response, reference",
    [
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{0.5}", "\\dfrac{1}{2}"),
        ("\\boxed{(1,2)}", "(1,2)"),  # bare tuple gold needs the $...$ wrap (SPEC §12)
        ("\\boxed{10\\%}", "10\\%"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("\\boxed{1,450,000}", "1450000"),
        ("She makes $18.\n#### 18", "18"),  # GSM8K-style answer line
        ("#### 1,450,000", "1,450,000"),  # thousands separators on both sides
        ("\\boxed{18}", "9*2=18\n#### 18"),  # a raw GSM8K answer column as the reference
        ("The answer is 7.", "7"),  # no box, no hashes: math-verify's own extraction
        ("\\boxed{x=5}", "5"),
        (12, "12"),  # a number as response is graded as its text
    ],
)
def test_is_correct_accepts_equivalent_answers(response, reference):
    assert is_correct(response, reference) is True


@pytest.mark.parametrize(
    "response, reference",
    [
        ("\\boxed{3}", "4"),
        ("\\boxed{-3}", "3"),
        ("\\boxed{(2,1)}", "(1,2)"),  # order matters for tuples
        ("\\boxed{18.00001}", "18"),
        ("#### 19", "18"),
        ("\\boxed{}", "3"),
        ("\\boxed{3}", ""),
        ("\\boxed{3}", None),
        (None, "3"),
        ("", "3"),
        (["\\boxed{3}"], "3"),
        ("\\boxed{" + "9" * 2000 + "}", "3"),  # over MAX_ANSWER_CHARS: not a final answer
        ("\\boxed{3} and then \\boxed{4}", "3"),  # only the last box counts
    ],
)
def test_is_correct_rejects_wrong_or_malformed_answers(response, reference):
    assert is_correct(response, reference) is False


@pytest.mark.parametrize("timeout_s", [0, -1.0, math.inf, "3"])
def test_is_correct_rejects_a_timeout_that_would_not_bound_it(timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        is_correct("\\boxed{3}", "3", timeout_s=timeout_s)


def test_is_correct_grades_the_same_off_the_main_thread():
    cases = [("\\boxed{\\frac{1}{2}}", "0.5", True), ("\\boxed{3}", "4", False), ("\\boxed{9^{9^{9^{9}}}}", "3", False)]
    got: list[tuple[bool, float]] = []

    def worker():
        for response, reference, _ in cases:
            start = time.monotonic()
            got.append((is_correct(response, reference), time.monotonic() - start))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert [ok for ok, _ in got] == [expected for _, _, expected in cases]
    assert all(seconds < WALL_BOUND_S for _, seconds in got)


def test_is_correct_restores_the_callers_alarm_handler():
    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        assert is_correct("\\boxed{9}", "9")
        assert signal.getsignal(signal.SIGALRM) is handler
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)


ADVERSARIAL = {
    "megabyte of open braces": "{" * 1_000_000,
    "boxed then a megabyte of open braces": "\\boxed{" + "{" * 1_000_000,
    "deeply nested braces in a box": "\\boxed{" + "{" * 400 + "1" + "}" * 401,
    "tower of six twos": "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "tower of nines": "\\boxed{9^{9^{9^{9}}}}",
    "tall tower": "\\boxed{" + "2^{" * 300 + "2" + "}" * 301,
    "huge factorial": "\\boxed{(10^{8})!}",
    "frac nest": "\\boxed{" + "\\frac{1}{" * 100 + "2" + "}" * 101,
    "paren nest": "\\boxed{" + "(" * 400 + "1" + ")" * 400 + "}",
    "binary junk": bytes(random.Random(0).randrange(256) for _ in range(100_000)).decode("latin-1"),
    "nul bytes": "\x00" * 1000 + "\\boxed{\x00}",
    "raw bytes": bytes(range(256)) * 4,
    "dollar run": "$" * 100_000,
    "hash run": "#### " + "9" * 5000,
    "empty": "",
    "none": None,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_is_correct_is_false_and_bounded_on_adversarial_text(name):
    start = time.monotonic()
    assert is_correct(ADVERSARIAL[name], "3") is False
    assert correctness_reward(ADVERSARIAL[name], "3") == 0.0
    assert time.monotonic() - start < 2 * WALL_BOUND_S  # two gradings, each under WALL_BOUND_S


def test_is_correct_is_bounded_when_the_reference_is_adversarial():
    start = time.monotonic()
    assert is_correct("\\boxed{3}", "9^{9^{9^{9}}}") is False
    assert time.monotonic() - start < WALL_BOUND_S


# --- fuzzing: rewards never raise on arbitrary text ---------------------------------------------

LATEX_TOKENS = list("{}\\^_$#()[],.-+*/=0123456789x ") + ["\\boxed{", "\\frac", "</think>", "####", "<budget>"]
LATEXISH = st.lists(st.sampled_from(LATEX_TOKENS), max_size=120).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), LATEXISH), reference=st.one_of(st.text(max_size=20), LATEXISH))
def test_rewards_never_raise_on_arbitrary_text(text, reference):
    assert extract_boxed(text) is None or isinstance(extract_boxed(text), str)
    assert isinstance(is_correct(text, reference), bool)
    assert correctness_reward(text, reference) in (0.0, 1.0)
    assert isinstance(is_formatted(text), bool)
    assert parse_budget_tag(text) is None or parse_budget_tag(text) > 0


# --- real data ----------------------------------------------------------------------------------


def test_is_correct_accepts_math500_reference_solutions(shared_data):
    rows = _rows(shared_data / "math500.jsonl")
    rejected = [i for i, r in enumerate(rows) if not is_correct(r["solution"], r["answer"])]
    assert len(rows) == 500
    assert len(rejected) <= 3, f"rejected reference solutions: {rejected}"


def test_is_correct_rarely_accepts_a_solution_against_another_problems_answer(shared_data):
    rows = _rows(shared_data / "math500.jsonl")
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    # pairs whose answers differ as strings; equal answers (two problems both answering "3") are true accepts
    pairs = [(i, j) for i, j in enumerate(order) if rows[i]["answer"].strip() != rows[j]["answer"].strip()]
    accepted = [(i, j) for i, j in pairs if is_correct(rows[i]["solution"], rows[j]["answer"])]
    assert len(accepted) <= 0.01 * len(pairs), f"false accepts: {accepted}"
    shifted = sum(is_correct(rows[i]["solution"], rows[(i + 1) % len(rows)]["answer"]) for i in range(len(rows)))
    assert shifted <= 0.01 * len(rows)  # raw rate on the neighbour pairing, equal answers included


def test_is_correct_accepts_every_gsm8k_reference_and_rejects_off_by_one(shared_data):
    rows = _rows(shared_data / "gsm8k_test.jsonl")
    answers = [gsm8k_reference(r["answer"]) for r in rows]
    assert len(rows) == 1319
    assert all(is_correct(r["answer"], n) for r, n in zip(rows, answers))
    assert all(is_correct(f"\\boxed{{{n}}}", n) for n in answers)
    off_by_one = [str(int(n) + 1) for n in answers]
    assert not any(is_correct(r["answer"], n) for r, n in zip(rows, off_by_one))
    assert not any(is_correct(f"\\boxed{{{n}}}", m) for n, m in zip(answers, off_by_one))


# --- format and correctness reward --------------------------------------------------------------


@pytest.mark.parametrize("text", [GOOD, "</think>\\boxed{x}", BUDGETED])
def test_is_formatted_accepts_one_think_end_and_a_box_after_it(text):
    assert is_formatted(text)


@pytest.mark.parametrize(
    "text",
    [
        "7+5=12. \\boxed{9}",  # no </think>
        "\\boxed{9}</think> Final answer: 9",  # box only before </think>
        "a</think>b</think>\\boxed{9}",  # two </think>
        "a</think> \\boxed{9",  # unbalanced box
        "",
        None,
    ],
)
def test_is_formatted_rejects_other_shapes(text):
    assert not is_formatted(text)


def test_correctness_reward_parts_needs_format_and_correctness():
    assert correctness_reward_parts(GOOD, "9") == {"correct": 1.0, "format": 1.0, "reward": 1.0}
    assert correctness_reward_parts("\\boxed{9}", "9") == {"correct": 1.0, "format": 0.0, "reward": 0.0}
    assert correctness_reward_parts(GOOD, "8") == {"correct": 0.0, "format": 1.0, "reward": 0.0}
    assert correctness_reward(GOOD, "9") == 1.0 and correctness_reward(GOOD, "8") == 0.0


# --- TRL adapter --------------------------------------------------------------------------------


def test_trl_correctness_reward_scores_strings_and_chat_messages():
    completions = [
        "\\boxed{9}",
        [{"role": "assistant", "content": "x</think> \\boxed{4}"}],
        [{"role": "user", "content": "\\boxed{9}"}, {"role": "assistant", "content": "no answer"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{"}, {"type": "text", "text": "2}"}]}],
        None,
    ]
    # 9 == 9; 4 == 4 (no think format needed); the assistant's turn has no 9; parts joined give 2; junk
    assert trl_correctness_reward(completions, ["9", 4, "9", "2", "1"], prompts=["p"] * 5) == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_trl_correctness_reward_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="must match"):
        trl_correctness_reward(["\\boxed{1}"], ["1", "2"])


# --- SelfBudgeter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<budget>120</budget><think>", 120),
        ("  <budget> 7 </budget>", 7),
        ("<budget>0</budget>", None),  # not positive
        ("<budget>-3</budget>", None),
        ("x <budget>5</budget>", None),  # not at the start
        ("<budget>5", None),
        ("<budget>" + "9" * 5000 + "</budget>", None),  # absurd digit run
        (None, None),
    ],
)
def test_parse_budget_tag_reads_a_leading_positive_budget(text, expected):
    assert parse_budget_tag(text) == expected


@pytest.mark.parametrize(
    "step, total, expected",
    [(0, 11, 6.0), (10, 11, 0.1), (5, 11, 3.05), (50, 11, 0.1), (0, 1, 6.0)],  # 6 + (0.1-6)*5/10 = 3.05
)
def test_alpha_schedule_falls_linearly_from_start_to_end(step, total, expected):
    assert alpha_schedule(step, total) == pytest.approx(expected)


@pytest.mark.parametrize("step, total", [(-1, 10), (0, 0)])
def test_alpha_schedule_rejects_bad_steps(step, total):
    with pytest.raises(ValueError):
        alpha_schedule(step, total)


@pytest.mark.parametrize(
    "length, declared, alpha, expected",
    [(100, 100, 1.0, 1.0), (150, 100, 1.0, 0.5), (200, 100, 1.0, 0.0), (400, 100, 1.0, 0.0), (125, 100, 0.5, 0.5)],
)  # gap = |l-N|/(alpha N): 0 -> 1; 0.5 -> 0.5*(1+cos(pi/2)) = 0.5; >= 1 -> 0
def test_budget_match_score_is_one_on_budget_and_zero_past_tolerance(length, declared, alpha, expected):
    assert budget_match_score(length, declared, alpha) == pytest.approx(expected)


def _sb(correct, fmt, penalty, length, reward) -> dict[str, float]:
    return {"correct": correct, "format": fmt, "budget_penalty": penalty, "length": length, "reward": reward}


@pytest.mark.parametrize(
    "response, reference, declared, length, allowed_max, expected",
    [
        (BUDGETED, "9", 100, 100, math.inf, _sb(1.0, 1.0, 0.0, 0.5, 1.5)),  # 1 + 0.5 * 1 (on budget)
        (BUDGETED, "9", 100, 150, math.inf, _sb(1.0, 1.0, 0.0, 0.25, 1.25)),  # 1 + 0.5 * 0.5 (half tolerance off)
        (BUDGETED, "8", None, 100, 120, _sb(0.0, 1.0, 0.0, 0.5, 0.5)),  # wrong: 0 + 0.5 * 1; N read from the tag
        (BUDGETED, "9", 100, 100, 80, _sb(1.0, 1.0, -0.5, 0.0, -0.5)),  # declared 100 > allowed 80: overflow
        (GOOD, "9", None, 10, math.inf, _sb(1.0, 0.0, 0.0, 0.0, -1.0)),  # no tag, no declared budget: format
        ("<budget>5</budget>\\boxed{9}", "9", 5, 5, math.inf, _sb(0.0, 0.0, 0.0, 0.0, -1.0)),  # no </think>: not graded
        (GOOD, "9", 0, 10, math.inf, _sb(1.0, 0.0, 0.0, 0.0, -1.0)),  # declared 0 is not a budget
    ],
)
def test_selfbudgeter_reward_parts_by_branch(response, reference, declared, length, allowed_max, expected):
    parts = selfbudgeter_reward_parts(response, reference, declared, length, allowed_max, alpha=1.0)
    reward = selfbudgeter_reward(response, reference, declared, length, allowed_max, alpha=1.0)
    assert parts == pytest.approx(expected)
    assert reward == pytest.approx(expected["reward"])


def test_selfbudgeter_reward_uses_the_given_penalties_and_weight():
    # 1 + 2.0 * 1 on budget; overflow -> -3; bad format -> -7
    assert selfbudgeter_reward(BUDGETED, "9", 100, 100, math.inf, 1.0, length_weight=2.0) == pytest.approx(3.0)
    assert selfbudgeter_reward(BUDGETED, "9", 100, 100, 50, 1.0, overflow_penalty=-3.0) == -3.0
    assert selfbudgeter_reward(GOOD, "9", None, 10, math.inf, 1.0, format_penalty=-7.0) == -7.0


def test_selfbudgeter_length_term_only_for_correct_answers_when_asked():
    # on budget: correct 1 + 0.5, wrong 0 + 0.5 by default; with length_when_wrong=False the wrong answer earns 0
    assert selfbudgeter_reward(BUDGETED, "9", 100, 100, math.inf, 1.0, length_when_wrong=False) == pytest.approx(1.5)
    assert selfbudgeter_reward(BUDGETED, "8", 100, 100, math.inf, 1.0) == pytest.approx(0.5)
    parts = selfbudgeter_reward_parts(BUDGETED, "8", 100, 100, math.inf, 1.0, length_when_wrong=False)
    assert parts == pytest.approx(_sb(0.0, 1.0, 0.0, 0.0, 0.0))
    # the other branches do not change
    assert selfbudgeter_reward(BUDGETED, "8", 100, 100, 80, 1.0, length_when_wrong=False) == -0.5


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": -1.0}, {"length": -1}, {"allowed_max": 0}])
def test_selfbudgeter_reward_parts_rejects_bad_arguments(kwargs):
    args = {"declared": 100, "length": 100, "allowed_max": math.inf, "alpha": 1.0} | kwargs
    with pytest.raises(ValueError):
        selfbudgeter_reward_parts(BUDGETED, "9", **args)


# --- L1 and the registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "correct, length, target, alpha, expected",
    [
        (True, 120, 100, 0.001, 0.98),
        (False, 100, 100, 0.001, 0.0),
        (False, 0, 1000, 0.001, -1.0),
        (True, 50, 100, 0.01, 0.5),
    ],
)  # 1 - 0.001*20 = 0.98; 0 - 0 = 0; 0 - 0.001*1000 = -1; 1 - 0.01*50 = 0.5
def test_l1_length_reward_is_correctness_minus_scaled_gap(correct, length, target, alpha, expected):
    assert l1_length_reward(correct, length, target, alpha) == pytest.approx(expected)


@pytest.mark.parametrize("length, target, alpha", [(10, 10, -0.1), (-1, 10, 0.001), (10, -1, 0.001)])
def test_l1_length_reward_rejects_negative_arguments(length, target, alpha):
    with pytest.raises(ValueError):
        l1_length_reward(True, length, target, alpha)


def test_get_reward_returns_registered_functions_and_names_the_known_ones():
    assert get_reward("correctness") is correctness_reward
    assert get_reward("l1") is l1_length_reward
    assert get_reward("l1_max") is l1_max_reward
    assert set(REWARDS) == {"correctness", "selfbudgeter", "l1", "l1_max"}
    with pytest.raises(ValueError, match="correctness"):
        get_reward("cosine")


def test_an_identical_boxed_string_is_accepted_without_the_parser_and_a_different_one_is_not():
    assert is_correct("x</think> Final answer: \\boxed{42}", "42")
    assert not is_correct("x</think> Final answer: \\boxed{43}", "42")


def test_correctness_reward_does_not_grade_an_unformatted_response():
    # no </think>: the reward is 0 even though the boxed answer is right
    assert correctness_reward("\\boxed{9}", "9") == 0.0
    assert correctness_reward("7+2=9.</think> Final answer: \\boxed{9}", "9") == 1.0


@pytest.mark.parametrize("correct, length, target, alpha, expected", [
    (True, 32, 32, 1 / 64, 0.5),  # at the target: delta
    (True, 0, 32, 1 / 64, 1.0),  # 32 under: 0.5 + 0.5, the cap
    (True, 48, 32, 1 / 64, 0.25),  # 16 over: 0.5 - 0.25
    (True, 80, 32, 1 / 64, 0.0),  # 48 over: clipped at 0
    (False, 10, 32, 1 / 64, 0.0),  # wrong earns nothing at any length
])
def test_l1_max_reward_is_correctness_times_the_clipped_length_term(correct, length, target, alpha, expected):
    assert l1_max_reward(correct, length, target, alpha) == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, word", [(dict(alpha=0.0), "alpha"), (dict(alpha=0.1, delta=1.5), "delta"),
                                          (dict(alpha=0.1, length=-1), "length")])
def test_l1_max_reward_rejects_bad_arguments(kwargs, word):
    args = {"correct": True, "length": 5, "target": 8, **kwargs}
    with pytest.raises(ValueError, match=word):
        l1_max_reward(**args)


def test_two_sided_budget_penalty_also_fires_below_the_share_of_the_allowed_maximum():
    # allowed 300, share .5: declaring 100 (< 150) costs the overflow penalty; 200 is inside and earns 1 + .5·match
    low = selfbudgeter_reward_parts(BUDGETED, "9", 100, 100, 300, 1.0, underflow_share=0.5)
    assert low == pytest.approx(_sb(1.0, 1.0, -0.5, 0.0, -0.5))
    assert selfbudgeter_reward(BUDGETED, "9", 200, 200, 300, 1.0, underflow_share=0.5) == pytest.approx(1.5)
    # no lower bound where the warm start never solved the question (allowed maximum infinite)
    assert selfbudgeter_reward(BUDGETED, "9", 1, 1, math.inf, 1.0, underflow_share=0.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="underflow_share"):
        selfbudgeter_reward_parts(BUDGETED, "9", 100, 100, 300, 1.0, underflow_share=1.5)


# --- the answer rule: the last \boxed{} (SPEC §6) or the seeds' first one after the answer cue ----------


TWO_BOXES = "7+5=12.</think> Final answer: \\boxed{12}, or \\boxed{13}"


def test_the_seeds_rule_grades_the_first_box_after_the_cue_and_the_default_the_last():
    assert graded_text(TWO_BOXES, "seeds") == "\\boxed{12}"
    assert graded_text(TWO_BOXES, "last_boxed") == TWO_BOXES
    assert correctness_reward(TWO_BOXES, "12", rule="seeds") == 1.0
    assert correctness_reward(TWO_BOXES, "12") == 0.0  # the default grades \boxed{13}
    assert correctness_reward_parts(TWO_BOXES, "13", rule="seeds") == {"correct": 0.0, "format": 1.0, "reward": 0.0}


def test_the_seeds_rule_ignores_boxes_before_the_cue_and_needs_exactly_one_closed_think():
    assert graded_text("\\boxed{1} 7+5=12.</think> \\boxed{2} Final answer: \\boxed{12}", "seeds") == "\\boxed{12}"
    assert graded_text("7+5=12.</think> so \\boxed{12}", "seeds") == "\\boxed{12}"  # no cue: after </think>
    assert graded_text("7+5=12. Final answer: \\boxed{12}", "seeds") is None  # thinking never closed
    assert graded_text("a</think> b</think> Final answer: \\boxed{12}", "seeds") is None
    assert graded_text("7+5=12.</think> Final answer: 12", "seeds") is None
    assert first_boxed("x \\boxed{{a}b} \\boxed{c}") == "{a}b" and first_boxed("\\boxed{open") is None


def test_an_unknown_answer_rule_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="answer rule='first' is not accepted"):
        graded_text(TWO_BOXES, "first")


def test_selfbudgeter_reward_grades_under_the_answer_rule():
    tagged = "<budget>20</budget><think>" + TWO_BOXES
    kw = dict(declared=20, length=18, allowed_max=30, alpha=1.0)
    assert selfbudgeter_reward_parts(tagged, "12", answer_rule="seeds", **kw)["correct"] == 1.0
    assert selfbudgeter_reward_parts(tagged, "12", **kw)["correct"] == 0.0
