"""The synthetic graded task: chains of additions and subtractions whose length is the difficulty level.

Level L is a chain of L +/- steps on small numbers (every operand in 1..max_operand, every partial
result in 0..max_result) and its reference solution writes one step per level, so the correct
thinking grows with the level. `make_synthetic` returns the plain problem rows described in data.py
(`source` "synthetic"), with distinct questions and levels balanced within one, the same rows for the
same seed. The task is described in data/README.md.
"""

from __future__ import annotations

import random
from typing import Sequence

DEFAULT_LEVELS = (1, 2, 3, 4, 5, 6)


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
