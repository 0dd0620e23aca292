"""RL methods as small named diffs: each turns one step's traces and rewards into training sequences.

Every method gets a `Step` (the sampled traces, the reward table r[N, G, S, A], the config) and returns
the sequences to train with their per-token advantages, the loss to use ("ppo" or "sft") and a few
numbers to log. Adding a method is one function plus one entry in `METHODS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from budgetlab.advantages import brpo_advantages, grpo_advantages, ibpo_select, summary_advantages, token_advantages
from budgetlab.budgets import prior_weights
from budgetlab.packing import TrainSeq, pack_branches
from budgetlab.rewards import l1_max_reward
from budgetlab.traces import Summary, Trace
from budgetlab.truncation import Markers


@dataclass
class Step:
    """What a method sees: traces in prompt-major order (N prompts × G traces) and their rewards."""

    traces: list[Trace]
    rewards: torch.Tensor  # r[N, G, S, A]
    budgets: list[int]
    markers: Markers
    cfg: object  # RLConfig (train.py); read-only here
    extra: dict = field(default_factory=dict)  # method-specific inputs, e.g. SelfBudgeter's reward table

    def trace(self, n: int, g: int) -> Trace:
        return self.traces[n * self.rewards.shape[1] + g]


@dataclass
class MethodOutput:
    seqs: list[TrainSeq]
    loss: str = "ppo"  # "ppo" or "sft"
    logs: dict = field(default_factory=dict)


def completion_seq(trace: Trace, summary: Summary, markers: Markers, think_adv, summary_adv: float,
                   train_thinking: bool = True) -> TrainSeq:
    """prompt + kept thinking + (</think> | cut marker) + cue + summary, with the trained tokens marked.

    `think_adv` is a float or one value per kept thinking token. The model's own </think> (thinking closed
    before the cut) is trained with the last thinking token's advantage; the cut marker and the answer cue
    were inserted, so they are never trained (SPEC §6). The rollout's recorded states, where it kept them, come
    along (`TrainSeq.states`).
    """
    kept = trace.thinking_ids[: summary.kept]
    scalar = isinstance(think_adv, (int, float))
    per_tok = [float(think_adv)] * len(kept) if scalar else [float(a) for a in think_adv][: len(kept)]
    last = float(think_adv) if scalar else (per_tok[-1] if per_tok else 0.0)  # for </think> and a budget tag
    p = trace.prompt_ids
    ids, adv, mask = list(p), [0.0] * len(p), [False] * len(p)
    s, e = trace.trained_prefix
    for t in range(s, e):  # a generated budget tag is trained with the thinking's advantage
        adv[t], mask[t] = last, train_thinking
    ids += kept
    adv += per_tok
    mask += [train_thinking] * len(kept)
    marker = markers.end_ids if not summary.truncated else markers.cut_ids
    own_end = not summary.truncated and trace.closed
    ids += marker + markers.cue_ids
    adv += [last if own_end else 0.0] * len(marker) + [0.0] * len(markers.cue_ids)
    mask += [own_end and train_thinking] * len(marker) + [False] * len(markers.cue_ids)
    ids += summary.ids
    adv += [float(summary_adv)] * len(summary.ids)
    mask += [True] * len(summary.ids)
    states = None  # the rollout's frozen-layer states, where it kept them: the prompt and kept thinking, the rest
    if trace.states is not None and summary.states is not None:
        states = torch.cat([trace.states[:len(p) + len(kept)], summary.states])
    return TrainSeq(ids, adv, mask, states=states)


def terminal_rewards(step: Step) -> torch.Tensor:
    """r[N, G]: the reward of the first summary at the largest budget (the natural completion)."""
    return step.rewards[:, :, -1, 0]


def grpo(step: Step) -> MethodOutput:
    """GRPO (DeepSeekMath): one terminal reward per trace, group-normalised advantage on every token."""
    r = step.extra.get("terminal", terminal_rewards(step))
    adv = grpo_advantages(r, scale_by_std=step.cfg.method != "drgrpo")
    n, g = r.shape
    seqs = [completion_seq(step.trace(i, k), step.trace(i, k).summaries[-1][0], step.markers,
                           float(adv[i, k]), float(adv[i, k])) for i in range(n) for k in range(g)]
    return MethodOutput(seqs, "ppo", {"adv_abs": float(adv.abs().mean())})


def brpo(step: Step) -> MethodOutput:
    """BRPO (AnytimeReasoner): dense budget-relative thinking advantages, decoupled summary advantages."""
    cfg, budgets = step.cfg, step.budgets
    prior = torch.tensor(prior_weights(cfg.prior, budgets), dtype=torch.float32)
    think = brpo_advantages(step.rewards.mean(-1), prior, mode=cfg.brpo_mode, decay=cfg.decay)  # [N, G, S]
    summ = summary_advantages(step.rewards)  # [N, G, S, A]
    n, g, s, a = step.rewards.shape
    seqs = []
    for i in range(n):
        for k in range(g):
            tr = step.trace(i, k)
            per_token = token_advantages(think[i, k], budgets, tr.n_thinking).tolist()
            # A summary shared by several budgets (thinking closed earlier) is trained once, with its mean advantage.
            distinct: dict[int, tuple[Summary, list[float]]] = {}
            for j in range(s):
                for q in range(a):
                    sm = tr.summaries[j][q]
                    distinct.setdefault(id(sm), (sm, []))[1].append(float(summ[i, k, j, q]))
            last = tr.summaries[-1][0]
            # The natural completion carries the thinking tokens; other summaries train only themselves,
            # packed after it so prompt and thinking are read once (the loss is that of separate sequences).
            natural, others = None, []
            for sm, advs in distinct.values():
                seq = completion_seq(tr, sm, step.markers, per_token, sum(advs) / len(advs), train_thinking=sm is last)
                natural, others = (seq, others) if sm is last else (natural, others + [seq])
            seqs.append(pack_branches(natural, others) if cfg.pack else natural)
            if not cfg.pack:
                seqs += others
    return MethodOutput(seqs, "ppo", {"adv_abs": float(think.abs().mean())})


def ibpo(step: Step) -> MethodOutput:
    """IBPO ("Think Smarter not Harder"): pick responses by an integer program under a quota, then weighted SFT."""
    cfg = step.cfg
    r = terminal_rewards(step).numpy()
    n, g = r.shape
    lengths = np.array([[step.trace(i, k).n_thinking for k in range(g)] for i in range(n)])
    expensive = lengths > cfg.expensive_threshold
    margin = r - 0.5  # correct responses are worth selecting, wrong ones never are
    chosen = ibpo_select(margin, expensive, cfg.quota, cfg.max_per_prompt)
    seqs = [completion_seq(step.trace(i, k), step.trace(i, k).summaries[-1][0], step.markers, 1.0, 1.0)
            for i in range(n) for k in range(g) if chosen[i, k]]
    picked = int(chosen.sum())
    return MethodOutput(seqs, "sft", {"selected": picked,
                                      "expensive_share": float(expensive[chosen].mean()) if picked else 0.0})


def selfbudgeter(step: Step) -> MethodOutput:
    """SelfBudgeter phase 2: GRPO on the budget-guided reward (format, overflow, correctness, length match)."""
    r = step.extra["selfbudgeter_reward"]  # [N, G] computed by the loop from selfbudgeter_reward_parts
    return grpo(Step(step.traces, step.rewards, step.budgets, step.markers, step.cfg, {"terminal": r}))


def l1(step: Step) -> MethodOutput:
    """L1 (LCPO-Max): GRPO on correctness × clip(α·(target − length) + δ, 0, 1), the target in each prompt.

    `step.extra["targets"]` holds one target per prompt (the loop pre-fills it as `<budget>N</budget>`);
    α = cfg.l1_alpha (default 1 / largest budget), δ = 0.5 as in the paper.
    """
    correct, targets = terminal_rewards(step), step.extra["targets"]
    n, g = correct.shape
    alpha = step.cfg.l1_alpha or 1.0 / step.budgets[-1]
    r = torch.tensor([[l1_max_reward(bool(correct[i, k]), step.trace(i, k).n_thinking, targets[i], alpha)
                       for k in range(g)] for i in range(n)])
    out = grpo(Step(step.traces, step.rewards, step.budgets, step.markers, step.cfg, {"terminal": r}))
    out.logs.update(l1_reward=float(r.mean()), l1_target=float(np.mean(targets)))
    return out


METHODS: dict[str, Callable[[Step], MethodOutput]] = {
    "grpo": grpo,
    "drgrpo": grpo,
    "brpo": brpo,
    "ibpo": ibpo,
    "selfbudgeter": selfbudgeter,
    "l1": l1,
}


def get_method(name: str) -> Callable[[Step], MethodOutput]:
    """The method function for a name; unknown names fail with the list of known ones."""
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not known; use one of {sorted(METHODS)}.")
    return METHODS[name]


def summary_budgets(method: str, budgets: list[int], all_budgets: bool = False) -> list[int]:
    """The budgets an RL step decodes summaries at: every one for BRPO, which trains on each (and wherever
    `all_budgets` asks for them to be logged); the largest alone for the methods that train on that one only."""
    return list(budgets) if all_budgets or method == "brpo" else list(budgets[-1:])


def budget_tag(method: str, budget: int) -> str | int | None:
    """The budget tag a method's policy is prompted with when it answers at `budget`: SelfBudgeter writes its
    own ("self"), L1 is told the budget (pre-filled), every other method gets the plain prompt (None)."""
    return {"selfbudgeter": "self", "l1": int(budget)}.get(method)


def expensive_default(budgets: list[int]) -> int:
    """IBPO's default length threshold: thinking longer than half the largest budget is the expensive mode."""
    return int(math.ceil(budgets[-1] / 2))
