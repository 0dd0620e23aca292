"""Figures: each function takes a DataFrame and returns a matplotlib Figure; `save` writes PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def setup_style() -> None:
    """One look for every figure."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def save(fig, folder: str | Path, name: str) -> list[Path]:
    """Write fig as folder/name.png and .svg (atomically: temp name, then rename), then close it in pyplot
    so a notebook shows it once, where the cell returns it, not again at the end of the cell."""
    import os

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        final, tmp = folder / f"{name}.{ext}", folder / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, final)
        paths.append(final)
    plt.close(fig)
    return paths


def _curves_on(ax, curves: pd.DataFrame, title: str, legend: bool = True) -> None:
    for (model, grp), color in zip(curves.groupby("model", sort=False), sns.color_palette(n_colors=curves["model"].nunique())):
        grp = grp.sort_values("budget")
        ax.plot(grp["budget"], grp["accuracy"], marker="o", label=model, color=color)
        if "low" in grp:
            ax.fill_between(grp["budget"], grp["low"], grp["high"], alpha=0.12, color=color)
    ax.set(xlabel="thinking budget (tokens)", ylabel="accuracy", title=title, ylim=(-0.02, 1.02))
    if legend:
        ax.legend(fontsize=8, ncol=2)


def anytime_curves(curves: pd.DataFrame, title: str = "Anytime accuracy"):
    """curves: model, budget, accuracy, low, high -> accuracy against thinking budget with a band per model."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _curves_on(ax, curves, title)
    return fig


def benchmark_curves(curves: pd.DataFrame):
    """curves with a benchmark column -> one anytime panel per benchmark (AnytimeReasoner's per-test-set view)."""
    names = list(dict.fromkeys(curves["benchmark"]))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.5), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        _curves_on(ax, curves[curves["benchmark"] == name], name, legend=i == 0)
    return fig


def training_curves(metrics: pd.DataFrame, smooth: int = 1):
    """metrics: method, step, reward, thinking_len (and style_short) -> reward, thinking length (and the short-style
    share, the testbed's planted choice) over RL steps.

    `smooth` > 1 draws the per-step values faintly and a trailing mean over that many steps on top: one
    step's reward comes from a handful of samples and is mostly noise."""
    panels = [("reward", "reward over training", "reward"), ("thinking_len", "thinking length over training",
                                                             "thinking tokens")]
    if "style_short" in metrics and metrics["style_short"].notna().any():
        panels.append(("style_short", "short-style share over training", "share of steps written short"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    metrics = metrics.sort_values(["method", "step"])
    for ax, (col, title, ylabel) in zip(axes, panels):
        if smooth > 1:
            sns.lineplot(data=metrics, x="step", y=col, hue="method", alpha=0.25, ax=ax, legend=False)
            trend = metrics.assign(**{col: metrics.groupby("method")[col].transform(
                lambda s: s.rolling(smooth, min_periods=1).mean())})
            sns.lineplot(data=trend, x="step", y=col, hue="method", linewidth=2, ax=ax, legend=ax is axes[0])
            title += f" (trailing mean of {smooth} steps)"
        else:
            sns.lineplot(data=metrics, x="step", y=col, hue="method", marker="o", ax=ax, legend=ax is axes[0])
        ax.set(title=title, ylabel=ylabel)
    return fig


def probe_curves(probes: pd.DataFrame):
    """probes: method, step, probe_reward, probe_thinking (and probe_anytime, SelfBudgeter's probe_declared_rho)
    -> probe reward at the largest budget, anytime score over the training budgets, thinking length (and
    Spearman of declared budget with level) over RL steps. The probe uses the same problems and random draws
    each time, so its curve moves only when the policy does."""
    panels = [("probe_reward", "probe reward at the largest budget", "mean correctness")]
    if "probe_anytime" in probes and probes["probe_anytime"].notna().any():
        panels.append(("probe_anytime", "probe anytime score (training budgets)", "mean correctness over budgets"))
    panels.append(("probe_thinking", "probe thinking length", "thinking tokens"))
    if "probe_declared_rho" in probes and probes["probe_declared_rho"].notna().any():
        panels.append(("probe_declared_rho", "SelfBudgeter: declared budget vs level", "Spearman correlation"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    methods = list(probes["method"].unique())  # one colour per method in every panel
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    for ax, (col, title, ylabel) in zip(axes, panels):
        data = probes.dropna(subset=[col])
        sns.lineplot(data=data, x="step", y=col, hue="method", palette=palette, hue_order=methods, marker="o", ax=ax,
                     legend=ax is axes[0])
        ax.set(title=title, xlabel="RL steps done", ylabel=ylabel)
        if col in ("probe_reward", "probe_anytime"):
            ax.set(ylim=(-0.02, 1.02))
    return fig


def reward_gain_curves(df: pd.DataFrame, smooth: int = 10):
    """df: method, step, reward, frozen_reward, gain -> trailing means (over `smooth` steps) of each method's
    per-step reward beside the frozen warm start's on the same prompts, and of their difference (the gain)."""
    df = df.sort_values(["method", "step"])
    roll = df.groupby("method")[["reward", "frozen_reward", "gain"]].transform(
        lambda s: s.rolling(smooth, min_periods=1).mean())
    trend = df[["method", "step"]].join(roll)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(data=trend, x="step", y="reward", hue="method", ax=axes[0])
    frozen = trend.drop_duplicates("step")  # the same prompts, hence the same frozen reward, for every method
    axes[0].plot(frozen["step"], frozen["frozen_reward"], "k--", label="frozen warm start")
    axes[0].legend(fontsize=8)
    axes[0].set(title=f"per-step reward (trailing mean of {smooth})", xlabel="RL step", ylabel="mean correctness")
    sns.lineplot(data=trend, x="step", y="gain", hue="method", ax=axes[1], legend=False)
    axes[1].axhline(0, color="k", linewidth=0.8)
    axes[1].set(title="gain over the frozen warm start, same prompts", xlabel="RL step", ylabel="reward difference")
    fig.tight_layout()
    return fig


def loss_curve(metrics: pd.DataFrame, title: str = "SFT loss"):
    """metrics: step, loss (and optionally stage) -> loss over steps."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(data=metrics, x="step", y="loss", hue="stage" if "stage" in metrics else None, ax=ax)
    ax.set(title=title, yscale="log")
    return fig


def length_by_level(df: pd.DataFrame):
    """df: model, level, n_thinking -> mean thinking tokens by difficulty level per model."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=df, x="level", y="n_thinking", hue="model", ax=ax, errorbar=None)
    ax.set(title="thinking length by difficulty", ylabel="thinking tokens")
    ax.legend(fontsize=8, ncol=2)
    return fig


def accuracy_by_level(df: pd.DataFrame):
    """df: model, level, accuracy (at the largest budget) -> bars per level."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=df, x="level", y="accuracy", hue="model", ax=ax, errorbar=None)
    ax.set(title="accuracy by difficulty (largest budget)", ylim=(0, 1))
    ax.legend(fontsize=8, ncol=2)
    return fig


def declared_vs_actual(df: pd.DataFrame):
    """df: declared, n_thinking, level -> SelfBudgeter's declared budget against the thinking it used."""
    fig, ax = plt.subplots(figsize=(5, 5))
    sns.scatterplot(data=df, x="declared", y="n_thinking", hue="level", palette="viridis", ax=ax)
    hi = max(df["declared"].max(), df["n_thinking"].max(), 1)
    ax.plot([0, hi], [0, hi], ls="--", color="grey", lw=1)
    ax.set(title="declared vs actual thinking", xlabel="declared budget N", ylabel="thinking tokens used")
    return fig


def cost_frontier(points: pd.DataFrame, sc: pd.DataFrame | None = None):
    """points: model, mean_thinking_tokens, accuracy; sc: k, mean_thinking_tokens, accuracy (self-consistency)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.scatterplot(data=points, x="mean_thinking_tokens", y="accuracy", hue="model", s=80, ax=ax)
    if sc is not None and len(sc):
        ax.plot(sc["mean_thinking_tokens"], sc["accuracy"], marker="s", ls="--", color="black",
                label="self-consistency (k votes)")
        for _, r in sc.iterrows():
            ax.annotate(f"k={int(r['k'])}", (r["mean_thinking_tokens"], r["accuracy"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")
    ax.set(title="cost-accuracy frontier", xlabel="mean thinking tokens per problem", ylabel="accuracy",
           ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    return fig
