"""Figures: the probe plot draws one panel per measured quantity and skips columns nobody measured."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from budgetlab import plots  # noqa: E402


def probes(with_rho: bool) -> pd.DataFrame:
    rows = [{"method": m, "step": s, "probe_reward": 0.2 + 0.01 * s, "probe_thinking": 25.0 - s,
             "probe_declared_rho": (0.3 + 0.02 * s) if (with_rho and m == "selfbudgeter") else None}
            for m in ("grpo", "selfbudgeter") for s in (0, 5, 10)]
    return pd.DataFrame(rows)


def test_probe_curves_add_the_declared_budget_panel_only_when_selfbudgeter_measured_it(tmp_path):
    fig = plots.probe_curves(probes(with_rho=True))
    assert [ax.get_title() for ax in fig.axes][2] == "SelfBudgeter: declared budget vs level"
    assert len(fig.axes[2].lines) >= 1 and len(fig.axes[0].get_legend().get_texts()) == 2
    paths = plots.save(fig, tmp_path, "probe")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in paths)
    assert len(plots.probe_curves(probes(with_rho=False)).axes) == 2


def test_probe_curves_show_the_anytime_score_next_to_the_reward_when_the_probe_has_it():
    # probes written before the anytime column existed (last session's probe.csv files) still plot, without it
    df = probes(with_rho=False).assign(probe_anytime=lambda d: d["probe_reward"] - 0.05)
    titles = [ax.get_title() for ax in plots.probe_curves(df).axes]
    assert titles == ["probe reward at the largest budget", "probe anytime score (training budgets)",
                      "probe thinking length"]


def test_reward_gain_curves_draw_the_frozen_baseline_once_and_a_zero_line_under_the_gain():
    df = pd.DataFrame([{"method": m, "step": s, "reward": 0.2 + d * s, "frozen_reward": 0.2, "gain": d * s}
                       for m, d in (("grpo", 0.01), ("brpo", 0.0)) for s in range(1, 6)])
    left, right = plots.reward_gain_curves(df, smooth=2).axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["brpo", "grpo", "frozen warm start"]
    assert list(right.lines[-1].get_ydata()) == [0, 0]  # the zero line
