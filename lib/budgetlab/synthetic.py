"""The generated tasks: chains of additions and subtractions whose length is the difficulty level.

Level L is a chain of L +/- steps on small numbers (every operand in 1..max_operand, every partial
result in 0..max_result) and its reference solution writes one step per level, so the correct
thinking grows with the level. Both makers return the plain problem rows described in data.py, with
distinct questions and levels balanced within one, the same rows for the same seed (data/README.md):

- `make_synthetic` (TASK "synthetic", the addition chain): numbers up to 50.
- `make_testbed` (TASK "testbed", the default profile's known-answer testbed): single-digit values, so every
  step is within a small model's reach (operations numbered in the question and in the thinking, so the k-th
  is found by its label), and each row's reference thinking is written in one of two styles that differ only
  in length: "short" (`(1) 3+4=7.`) or "long" (`(1) 3+4=7, so we have 7.`), the planted budget-relevant
  choice. `short_style_share` measures the style of any thinking text.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

DEFAULT_LEVELS = (1, 2, 3, 4, 5, 6)


# One step of reference thinking: the chain's plain step, and the testbed's two styles, numbered like the
# question's operations so the model finds the k-th one by its label (same steps, two lengths).
STYLES = {"chain": "{a}{op}{b}={c}.", "short": "({k}) {a}{op}{b}={c}.", "long": "({k}) {a}{op}{b}={c}, so we have {c}."}
TESTBED_LEVELS = (1, 2, 3, 4)
_STEP = re.compile(r"(\d+)\s*([+-])\s*(\d+)\s*=\s*(\d+)(, so we have \d+)?")


def _synthetic_problem(level: int, rng: random.Random, max_operand: int,
                       max_result: int) -> tuple[str, list[tuple], int]:
    """One chain of `level` + / - steps on 1..max_operand, every partial result in [0, max_result]:
    (question, steps as (a, op, b, a op b), answer)."""
    value = rng.randint(1, max_operand)
    terms, steps = [str(value)], []
    for _ in range(level):
        ops = [op for op, ok in (("+", value < max_result), ("-", value > 0)) if ok]
        op = rng.choice(ops)
        b = rng.randint(1, min(max_operand, max_result - value if op == "+" else value))
        new = value + b if op == "+" else value - b
        terms.append(f"{op} {b}")
        steps.append((value, op, b, new))  # each step starts from the previous result
        value = new
    return "Compute " + " ".join(terms), steps, value


def render_steps(steps: Sequence[tuple], style: str = "chain") -> str:
    """Reference thinking: one step per operation (the k-th labelled k where the style numbers them), in
    STYLES[style], joined by spaces."""
    if style not in STYLES:
        raise ValueError(f"style={style!r} is not accepted; use one of {sorted(STYLES)}.")
    return " ".join(STYLES[style].format(k=k, a=a, op=op, b=b, c=c) for k, (a, op, b, c) in enumerate(steps, 1))


def numbered_question(steps: Sequence[tuple]) -> str:
    """'Start at 5, then (1) +1 (2) -3.': the start value and the numbered operations."""
    return f"Start at {steps[0][0]}, then " + " ".join(f"({k}) {op}{b}" for k, (_, op, b, _) in enumerate(steps, 1)) + "."


def short_style_share(thinking: str) -> float | None:
    """Share of the arithmetic steps in `thinking` written in the short style (no ", so we have N"
    restatement); None when it holds no step. 1.0 = all short, 0.0 = all long."""
    steps = _STEP.findall(thinking or "")
    return sum(not m[4] for m in steps) / len(steps) if steps else None


def make_synthetic(n: int, levels: Sequence[int] = DEFAULT_LEVELS, seed: int = 0,
                   max_operand: int = 20, max_result: int = 50, keep_steps: bool = False) -> list[dict]:
    """n distinct arithmetic problems, level L = L chained +/- steps, balanced over levels (±1), deterministic by seed.
    `keep_steps` keeps each row's `steps` (the (a, op, b, result) tuples) for re-rendering."""
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
            question, steps, answer = _synthetic_problem(level, rng, max_operand, max_result)
            if question not in seen:
                break
        else:
            raise ValueError(f"cannot make {plan.count(level)} distinct level-{level} problems; ask for fewer (n={n}).")
        seen.add(question)
        rows.append({"id": f"synthetic-s{seed}-{i:05d}", "question": question, "answer": str(answer),
                     "solution": render_steps(steps), "level": level, "source": "synthetic", "steps": steps})
    return [{k: v for k, v in r.items() if k != "steps"} for r in rows] if not keep_steps else rows


def make_testbed(n: int, levels: Sequence[int] = TESTBED_LEVELS, seed: int = 0, long_share: float = 0.5) -> list[dict]:
    """n distinct single-digit chains (operands 1..9, every value in 0..9), each row's thinking written in the
    long style with probability `long_share`, else short (row key `style`); deterministic by seed."""
    if not (isinstance(long_share, (int, float)) and 0.0 <= long_share <= 1.0):
        raise ValueError(f"long_share={long_share!r} is not accepted; use a number in [0, 1].")
    rng = random.Random(f"testbed-style-{seed}")  # the style draw leaves the problems as make_synthetic makes them
    rows = []
    for r in make_synthetic(n, levels, seed, max_operand=9, max_result=9, keep_steps=True):
        style = "long" if rng.random() < long_share else "short"
        rows.append({**{k: v for k, v in r.items() if k != "steps"}, "id": r["id"].replace("synthetic", "testbed"),
                     "question": numbered_question(r["steps"]), "solution": render_steps(r["steps"], style),
                     "style": style, "source": "testbed"})
    return rows


GENERATED = {"synthetic": make_synthetic, "testbed": make_testbed}  # TASK name -> maker(n, levels, seed)


def fresh_problems(task: str, seen: set[str], per_level: int, levels: Sequence[int], seed: int = 7) -> list[dict]:
    """Up to `per_level` problems of each level of a generated `task` whose question is not in `seen` (a run's
    training and eval questions): held-out problems for checking a warm start (`scripts/check_warmstart.py`).

    A level with fewer fresh problems left gives what it has (the testbed's level 1 has 81 in all). Ids are
    `<task>-fresh-s<seed>-l<level>-<k>`, distinct from the run's."""
    if task not in GENERATED:
        raise ValueError(f"task={task!r} is not a generated task; fresh problems come from {sorted(GENERATED)}.")
    if not isinstance(per_level, int) or per_level < 1:
        raise ValueError(f"per_level={per_level!r} is not accepted; use a positive integer.")
    make, out = GENERATED[task], []
    for level in levels:
        n = per_level + len(seen)  # enough even if every seen question is of this level
        try:
            rows = make(n, [level], seed)
        except ValueError:  # fewer distinct problems at this level than that: the most it makes (bisection)
            ok, bad, rows = 0, n, []
            while bad - ok > 1:
                mid = (ok + bad) // 2
                try:
                    rows, ok = make(mid, [level], seed), mid
                except ValueError:
                    bad = mid
        fresh = [r for r in rows if r["question"] not in seen][:per_level]
        out += [{**r, "id": f"{task}-fresh-s{seed}-l{level}-{k:05d}"} for k, r in enumerate(fresh)]  # one maker per level
    return out

# Stated before any run; data/README.md and the report (04) print it, budgetlab.stats.TESTBED_CLAIMS tests it.
TESTBED_GROUND_TRUTH = """**Testbed ground truth (stated before any run).** Every problem is a chain of numbered single-digit steps,
and the warm-start targets write the same correct steps in two styles mixed 50/50: short (`(1) 3+4=7.`, 10
tokens a step) and long (`(1) 3+4=7, so we have 7.`, 16). The thinking must reach the last step to know the
answer.
- At the largest budget (it fits the long style of the hardest level) both styles score alike, so GRPO,
  trained at that budget only, has little reason to change the style share.
- Below it the short style finishes where the long one is cut, so it scores higher: BRPO (rewarded at
  every budget), SelfBudgeter (rewarded for short declared budgets kept), IBPO (a quota on long answers) and
  an L1 length reward should raise the share of short-style steps over the warm start's."""
