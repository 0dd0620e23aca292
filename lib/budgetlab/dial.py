"""The budget dial: choose a model (adapter), a problem and a budget; see the thinking cut there and the forced answer."""

from __future__ import annotations

from typing import Sequence

from budgetlab.prompts import encode_prompt
from budgetlab.rollout import HFRollout


def cut_and_answer(model, tok, question: str, budget: int, max_summary: int = 12, prompt: str = "plain") -> dict:
    """Greedy thinking up to `budget` tokens, cut there, forced summary: the pieces to show."""
    trace = HFRollout(model, tok).rollout([encode_prompt(tok, question, style=prompt)], [budget],
                                          max_summary=max_summary, do_sample=False)[0]
    s = trace.summaries[0][0]
    return {"thinking": tok.decode(trace.thinking_ids[: s.kept]), "truncated": s.truncated, "kept": s.kept,
            "closed_at": trace.n_thinking if trace.closed else None, "graded_text": s.text}


def budget_dial(model, tok, rows: Sequence[dict], names: Sequence[str], budgets: Sequence[int], max_summary: int = 12,
                prompt: str = "plain"):
    """An ipywidgets control; `model` is a PeftModel holding the named adapters ("untrained" = adapter disabled)."""
    import ipywidgets as w
    from contextlib import nullcontext
    from html import escape

    pick_model = w.Dropdown(options=list(names), description="model")
    pick_row = w.Dropdown(options=[(f"L{r.get('level', 0)} · {r['question'][:50]}", i) for i, r in enumerate(rows)],
                          description="problem")
    pick_budget = w.SelectionSlider(options=list(budgets), value=list(budgets)[-1], description="budget")
    out = w.HTML()

    def show(_=None):
        name, row = pick_model.value, rows[pick_row.value]
        ctx = nullcontext()
        if name == "untrained" and hasattr(model, "disable_adapter"):
            ctx = model.disable_adapter()
        elif hasattr(model, "set_adapter") and name != "untrained":
            model.set_adapter(name)
        with ctx:
            r = cut_and_answer(model, tok, row["question"], pick_budget.value, max_summary, prompt)
        note = "cut here" if r["truncated"] else f"closed by the model after {r['closed_at']} tokens"
        out.value = (f"<b>reference</b> {escape(str(row['answer']))}<br><b>thinking</b> ({r['kept']} tokens, {note}):"
                     f"<pre>{escape(r['thinking'])}</pre><b>graded text</b><pre>{escape(r['graded_text'])}</pre>")

    for c in (pick_model, pick_row, pick_budget):
        c.observe(show, names="value")
    show()
    return w.VBox([w.HBox([pick_model, pick_budget]), pick_row, out])
