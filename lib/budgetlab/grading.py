"""Grading a response: extract its final answer and check it against a reference with math-verify.

`is_correct` is bounded in wall time (a SIGALRM deadline in the main thread, a worker process elsewhere),
because math-verify can take very long on adversarial input; `is_formatted` checks the response shape.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import signal
import threading
import time
from typing import Any

from budgetlab.config import check_choice
from budgetlab.truncation import ANSWER_CUE, THINK_END

MAX_RESPONSE_CHARS = 200_000  # only this tail of a response is graded: final answers sit at the end
MAX_ANSWER_CHARS = 1_000  # an extracted answer longer than this is not a final answer
DEFAULT_TAIL_CHARS = 1_000  # unboxed responses: math-verify's own extraction sees only this tail
GRADE_TIMEOUT_S = 3.0  # wall bound on one is_correct call (parse gold + parse prediction + verify)

_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.S)  # "\{", "\}" and "\\" are escapes, not groups
_GSM8K_ANSWER = re.compile(r"####\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


# --- answer extraction ---------------------------------------------------------------------------


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, braces matched; None if absent or unbalanced."""
    if not isinstance(text, str):
        return None
    start = None
    for m in _BOXED_OPEN.finditer(text):
        start = m.end()
    return None if start is None else _braced(text, start)


def first_boxed(text: str) -> str | None:
    """Content of the first \\boxed{...} (or \\fbox{...}) in text, braces matched; None if absent or unbalanced."""
    m = _BOXED_OPEN.search(text) if isinstance(text, str) else None
    return None if m is None else _braced(text, m.end())


def _braced(text: str, start: int) -> str | None:
    """text[start:] up to the brace that closes the one opened just before start; None if it never closes."""
    depth = 1  # one linear scan from the opener: no backtracking on nested or unbalanced braces
    for m in _BRACE_OR_ESCAPE.finditer(text, start):
        token = m.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return text[start : m.start()]
    return None


def gsm8k_reference(answer_text: str) -> str:
    """The number after the last '####' of a GSM8K answer, commas removed ('... #### 1,200' -> '1200')."""
    matches = _GSM8K_ANSWER.findall(answer_text) if isinstance(answer_text, str) else []
    if not matches:
        raise ValueError(f"answer_text={str(answer_text)[-80:]!r} has no '#### N' line; GSM8K answers end in '#### N'.")
    return matches[-1].replace(",", "")


def _as_text(value: Any) -> str | None:
    """A str for str, bytes (decoded leniently) and real numbers; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _gold_text(reference: Any) -> str | None:
    """The reference as bare LaTeX: GSM8K '#### N' reduced to N, thousands separators dropped."""
    text = _as_text(reference)
    if text is None:
        return None
    text = text.strip()
    if "####" in text:
        try:
            text = gsm8k_reference(text)
        except ValueError:
            return None
    elif "\\boxed" in text or "\\fbox" in text:
        text = (extract_boxed(text) or "").strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return text if 0 < len(text) <= MAX_ANSWER_CHARS else None


def _prediction_text(response: str) -> tuple[str, bool] | None:
    """(text for math-verify, boxed_only): the last \\boxed{}, else GSM8K '#### N', else the response tail."""
    tail = response[-MAX_RESPONSE_CHARS:]
    boxed = extract_boxed(tail)
    if boxed is not None:
        return ("\\boxed{" + boxed + "}", True) if len(boxed) <= MAX_ANSWER_CHARS else None
    numbers = _GSM8K_ANSWER.findall(tail)
    if numbers:
        return "$" + numbers[-1].replace(",", "") + "$", True
    return tail[-DEFAULT_TAIL_CHARS:], False


# --- grading under a time bound ------------------------------------------------------------------


class _GradeTimeout(BaseException):
    """Raised by the SIGALRM handler; a BaseException so math-verify's `except Exception` cannot swallow it."""


def _verify(gold_text: str, pred_text: str, boxed_only: bool) -> bool:
    """math-verify verify(gold, pred) with gold wrapped in $...$ (SPEC §12); its own timeouts off (we bound it)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold = parse("$" + gold_text + "$", parsing_timeout=None)
    if not gold:
        return False
    boxed = [LatexExtractionConfig(boxed_match_priority=0)]  # SPEC §12: a boxed answer uses boxed extraction alone
    configs = boxed if boxed_only else [LatexExtractionConfig(), ExprExtractionConfig()]
    pred = parse(pred_text, configs, parsing_timeout=None)
    return bool(pred) and bool(verify(gold, pred, timeout_seconds=None))


def _raise_timeout(signum: int, frame: Any) -> None:
    raise _GradeTimeout


def _verify_with_alarm(gold_text: str, pred_text: str, boxed_only: bool, timeout_s: float) -> bool:
    """_verify in the main thread under one SIGALRM deadline (re-fired every 0.25 s in case it is swallowed)."""
    old_handler = signal.signal(signal.SIGALRM, _raise_timeout)
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, timeout_s, 0.25)
    started = time.monotonic()
    try:
        return _verify(gold_text, pred_text, boxed_only)
    except (_GradeTimeout, Exception):
        return False
    finally:
        for _ in range(3):  # a deadline landing while we disarm is raised here once; retry the disarm
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
                break
            except _GradeTimeout:
                pass
        if old_delay > 0:  # give back a caller's own pending alarm, less the time we used
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - started), 1e-3))


def _verify_child(conn: Any, gold_text: str, pred_text: str, boxed_only: bool, timeout_s: float) -> None:
    """Worker-process entry: grade (the child's only thread is its main thread) and send the bool back."""
    try:
        ok = _verify_with_alarm(gold_text, pred_text, boxed_only, timeout_s)
    except BaseException:
        ok = False
    conn.send(ok)
    conn.close()


def _verify_in_process(gold_text: str, pred_text: str, boxed_only: bool, timeout_s: float) -> bool:
    """_verify in a short-lived worker process, killed at the deadline (signals need the main thread)."""
    _verify("1", "\\boxed{1}", True)  # constant input, cannot hang: forked workers inherit warm parsers

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_verify_child, args=(send, gold_text, pred_text, boxed_only, timeout_s), daemon=True)
    try:
        proc.start()
        send.close()
        return bool(recv.recv()) if recv.poll(timeout_s + 1.0) else False
    except Exception:  # a dead or broken worker; KeyboardInterrupt still reaches the caller
        return False
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=1.0)
        recv.close()


def is_correct(response: str, reference: str, timeout_s: float = GRADE_TIMEOUT_S) -> bool:
    """math-verify equivalence of the response's final answer with the reference; False on any error or timeout."""
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
        raise ValueError(f"timeout_s={timeout_s!r} must be a finite number of seconds above 0.")
    try:
        text, gold_text = _as_text(response), _gold_text(reference)
        if text is None or gold_text is None:
            return False
        extracted = _prediction_text(text)
        if extracted is None:
            return False
        pred_text, boxed_only = extracted
        if boxed_only and pred_text.strip() in ("\\boxed{" + gold_text.strip() + "}", "$" + gold_text.strip() + "$"):
            return True  # the same string is the same answer: skip the parser (most graded answers here)
        main = threading.current_thread() is threading.main_thread()
        if main and hasattr(signal, "setitimer"):
            return _verify_with_alarm(gold_text, pred_text, boxed_only, timeout_s)
        return _verify_in_process(gold_text, pred_text, boxed_only, timeout_s)
    except (_GradeTimeout, Exception):  # a deadline that fired while the alarm was being disarmed
        return False


# --- which answer a response gives ----------------------------------------------------------------

# "last_boxed": the response's last \boxed{} (SPEC §6, the default); "seeds": AnytimeReasoner's rule, the first
# \boxed{} after the answer cue in a response with exactly one `</think>` (the paper profile).
ANSWER_RULES = ("last_boxed", "seeds")


def graded_text(response: str, rule: str = "last_boxed") -> str | None:
    """The part of a response that `is_correct` grades under `rule` (ANSWER_RULES); None when it gives no answer.

    "last_boxed" grades the whole response (is_correct takes its last \\boxed{}). "seeds" grades only the first
    \\boxed{} after the answer cue (after `</think>` when the cue is absent), and nothing unless the response
    closes its thinking exactly once."""
    check_choice("answer rule", rule, ANSWER_RULES)
    if rule == "last_boxed" or not isinstance(response, str):
        return response
    if response.count(THINK_END) != 1:
        return None
    after = response.split(THINK_END, 1)[1]
    cue = ANSWER_CUE.strip()
    boxed = first_boxed(after.split(cue, 1)[1] if cue in after else after)
    return None if boxed is None else "\\boxed{" + boxed + "}"


def is_formatted(text: str) -> bool:
    """True when the whole response has exactly one '</think>' and a balanced \\boxed{} after it (SPEC §6)."""
    if not isinstance(text, str) or text.count(THINK_END) != 1:
        return False
    return extract_boxed(text.split(THINK_END, 1)[1]) is not None


def grade(response: str, reference: str, rule: str = "last_boxed") -> tuple[bool, bool]:
    """(formatted, correct) of a response under `rule` (ANSWER_RULES); an unformatted response is not graded."""
    formatted = is_formatted(response)
    text = graded_text(response, rule) if formatted else None
    return formatted, bool(text is not None and is_correct(text, reference))
