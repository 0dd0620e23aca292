"""The RL loop on a tiny random Llama: every method steps, the probe runs, resume replays exactly."""

import math

import pandas as pd
import pytest
import torch

from budgetlab.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from budgetlab.models import load_model
from budgetlab.synthetic import make_synthetic
from budgetlab.train import RLConfig, train_rl

ROWS = make_synthetic(24, levels=(1, 2), seed=0)
TIMING = {"step_seconds", "sample_seconds", "tokens_per_s"}


def tiny(adapter="lora"):
    torch.manual_seed(0)
    return load_model("tiny", adapter=adapter, lora_r=4)


def rl_cfg(method="grpo", **kw):
    # precision pinned: `auto` would pick by this machine's timings, and a test's outcome must not. bf16 is what
    # these tests were written under; the KL tests need it (see test_the_kl_reference_...).
    base = dict(method=method, steps=4, prompts_per_step=2, generations=2, budgets=[3, 6], max_summary=4,
                checkpoint_every=2, seed=0, precision="bf16")
    return RLConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["grpo", "drgrpo", "brpo", "ibpo"])
def test_every_method_takes_steps_and_logs_one_row_per_step(tmp_path, method):
    model, tok = tiny()
    metrics = train_rl(model, tok, ROWS, rl_cfg(method, steps=2), tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df["step"]) == [1, 2] and len(metrics) == 2
    for col in ("reward", "acc_6", "thinking_len", "step_seconds", "tokens_per_s"):
        assert col in df and df[col].notna().all(), col
    # the smaller budget's summaries: BRPO trains on them; the others decode only the largest budget's by default
    assert ("acc_3" in df) == (method == "brpo")
    if method != "ibpo":
        assert {"entropy", "clip_frac"} <= set(df.columns)


def test_all_budgets_decodes_and_logs_every_budget_for_any_method(tmp_path):
    model, tok = tiny()
    train_rl(model, tok, ROWS, rl_cfg("grpo", steps=1, all_budgets=True), tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert df[["acc_3", "acc_6"]].notna().all().all()


def test_selfbudgeter_logs_its_reward_parts_and_alpha(tmp_path):
    model, tok = tiny()
    cfg = rl_cfg("selfbudgeter", steps=2)
    metrics = train_rl(model, tok, ROWS, cfg, tmp_path, progress=False, allowed={r["id"]: 10 for r in ROWS})
    # a random model never writes a budget tag: every response takes the format penalty
    assert metrics[0]["reward"] == pytest.approx(-1.0)
    assert metrics[0]["alpha"] == pytest.approx(6.0) and metrics[1]["alpha"] == pytest.approx(0.1)


def test_l1_prompts_carry_a_target_from_the_training_budgets_and_never_train_it(tmp_path, monkeypatch):
    import budgetlab.train as train_mod

    model, tok = tiny()
    seen = []
    real = train_mod.update

    def spy(model, opt, seqs, *args, **kw):
        seen.extend(seqs)
        return real(model, opt, seqs, *args, **kw)

    monkeypatch.setattr(train_mod, "update", spy)
    metrics = train_rl(model, tok, ROWS, rl_cfg("l1", steps=2), tmp_path, progress=False)
    assert [m["step"] for m in metrics] == [1, 2] and all(3 <= m["l1_target"] <= 6 for m in metrics)  # mean target
    assert all(0.0 <= m["reward"] <= 1.0 for m in metrics)  # the LCPO-Max reward, logged as the step's reward
    for s in seen:  # the tag is in every sequence, before the first trained token
        untrained = tok.decode(s.ids[: s.mask.index(True)])
        assert "<budget>3</budget><think>" in untrained or "<budget>6</budget><think>" in untrained


def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_metrics(tmp_path):
    model, tok = tiny()
    full = train_rl(model, tok, ROWS, rl_cfg("brpo"), tmp_path / "full", progress=False)
    model, tok = tiny()  # a fresh process: same initial adapter
    train_rl(model, tok, ROWS, rl_cfg("brpo"), tmp_path / "cut", progress=False, max_steps=3)  # killed in step 4
    assert latest_checkpoint(tmp_path / "cut").name == "step_000002"  # step 3 had no checkpoint yet
    model, tok = tiny()
    resumed = train_rl(model, tok, ROWS, rl_cfg("brpo"), tmp_path / "cut", progress=False, resume=True)
    assert len(resumed) == len(full) == 4
    for a, b in zip(full, resumed):
        for k in a:
            if k not in TIMING:
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9, nan_ok=True), (a["step"], k)  # style_short: NaN = no step


def warm_started(scale=0.05):
    """The tiny model with LoRA B off zero: a stand-in for a warm-start adapter that differs from the base."""
    model, tok = tiny()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale, generator=torch.Generator().manual_seed(1))
    return model, tok


def test_the_kl_reference_is_the_policy_the_run_starts_from_not_the_base_model(tmp_path):
    # step 1 scores the starting policy against itself: KL exactly 0. Disabling the warm start's adapter
    # (the base model) would give KL > 0 here and pull the policy back to the untrained model. The tiny model earns
    # no reward, so step 1 moves the policy by AdamW's weight decay alone: under bf16 that shows as KL ~1e-6 at
    # step 2; in fp32 the k3 estimate of so small a move rounds to exactly 0.
    model, tok = warm_started()
    metrics = train_rl(model, tok, ROWS, rl_cfg("grpo", steps=2, beta=0.5, lr=1e-2), tmp_path, progress=False)
    assert metrics[0]["kl"] == 0.0 and metrics[1]["kl"] > 0


def test_a_resumed_run_keeps_the_warm_start_as_its_kl_reference(tmp_path):
    cfg = rl_cfg("grpo", beta=0.5, lr=1e-2)
    full = train_rl(*warm_started(), ROWS, cfg, tmp_path / "full", progress=False)
    train_rl(*warm_started(), ROWS, cfg, tmp_path / "cut", progress=False, max_steps=3)
    resumed = train_rl(*warm_started(), ROWS, cfg, tmp_path / "cut", progress=False, resume=True)
    assert [r["kl"] for r in resumed] == pytest.approx([r["kl"] for r in full], rel=1e-6, abs=1e-9)
    assert full[-1]["kl"] > 0


@pytest.mark.parametrize("loss_kind", ["ppo", "sft"])
def test_the_update_scores_ppo_at_the_sampling_temperature_and_sft_at_one(logits_scaled, loss_kind):
    # PPO's ratio and KL compare the distribution the rollouts came from, softmax(logits / T); the weighted
    # SFT step fits the model itself. Gradients at T = 0.5 must equal those of doubled logits at T = 1 (ppo)
    # or of the unchanged model (sft).
    from budgetlab.packing import TrainSeq
    from budgetlab.update import update

    model, tok = warm_started()
    g = torch.Generator().manual_seed(4)
    seqs = [TrainSeq(torch.randint(3, 200, (9,), generator=g).tolist(), [0.0] * 4 + [a] * 5, [False] * 4 + [True] * 5)
            for a in (1.0, -0.5)]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)

    def grads(temperature):
        update(model, opt, seqs, loss_kind, rl_cfg(temperature=temperature, precision="fp32"), tok.pad_token_id or 0)
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    hot = grads(0.5)
    with logits_scaled(model, 2.0 if loss_kind == "ppo" else 1.0):
        expected = grads(1.0)
    for a, b in zip(hot, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    if loss_kind == "ppo":
        assert any(not torch.allclose(a, b) for a, b in zip(hot, grads(1.0)))


def test_the_probe_runs_at_the_start_every_k_steps_and_at_the_end_and_survives_a_resume(tmp_path):
    cfg = dict(probe_every=2, probe_size=4, steps=5)
    model, tok = tiny()
    train_rl(model, tok, ROWS, rl_cfg("grpo", **cfg), tmp_path / "full", progress=False)
    full = pd.read_csv(tmp_path / "full" / "probe.csv")
    assert list(full["step"]) == [0, 2, 4, 5]
    assert full["probe_reward"].between(0, 1).all() and (full["probe_thinking"] >= 0).all()
    model, tok = tiny()
    train_rl(model, tok, ROWS, rl_cfg("grpo", **cfg), tmp_path / "cut", progress=False, max_steps=3)
    model, tok = tiny()
    train_rl(model, tok, ROWS, rl_cfg("grpo", **cfg), tmp_path / "cut", progress=False, resume=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "probe.csv"), full)


def test_selfbudgeter_trains_only_on_the_rows_phase_1_labelled(tmp_path):
    model, tok = tiny()
    labelled = ROWS[:2]
    metrics = train_rl(model, tok, ROWS, rl_cfg("selfbudgeter", steps=1, probe_every=1, probe_size=24), tmp_path,
                       progress=False, allowed={r["id"]: math.inf for r in labelled})
    assert len(metrics) == 1
    probe = pd.read_csv(tmp_path / "probe.csv")
    assert "probe_declared" in probe  # NaN here: a random model declares nothing
    with pytest.raises(ValueError, match="allowed"):
        train_rl(model, tok, ROWS, rl_cfg("selfbudgeter", steps=1), tmp_path / "none", progress=False)
    with pytest.raises(ValueError, match="labelled"):
        train_rl(model, tok, ROWS, rl_cfg("selfbudgeter", steps=1), tmp_path / "other", progress=False,
                 allowed={"not-a-row": 5})


def test_a_half_written_checkpoint_is_never_picked_up(tmp_path):
    model, tok = tiny()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    save_checkpoint(tmp_path, model, opt, 2, [{"step": 1}, {"step": 2}])
    (tmp_path / "checkpoints" / ".step_000004.k1ll3d.tmp").mkdir()  # a kill during the next save (atomic_dir)
    assert latest_checkpoint(tmp_path).name == "step_000002"
    step, rows = load_checkpoint(latest_checkpoint(tmp_path), model, opt)
    assert step == 2 and len(rows) == 2


def test_qlora_model_takes_an_rl_step_on_cpu(tmp_path):
    model, tok = tiny(adapter="qlora")
    metrics = train_rl(model, tok, ROWS, rl_cfg("grpo", steps=1), tmp_path, progress=False)
    assert math.isfinite(metrics[0]["loss"])


@pytest.mark.parametrize("bad, message", [
    (dict(method="ppo"), "method='ppo'"),
    (dict(budgets=[6, 3]), "increasing"),
    (dict(prior="cosine"), "cosine"),
    (dict(quota=-0.1), "quota"),
    (dict(generations=0), "generations"),
    (dict(probe_every=-1), "probe_every"),
    (dict(probe_size=0), "probe_size"),
    (dict(sb_length_when_wrong="False"), "True or False"),
    (dict(alpha_end=0.0), "alpha_end=0.0 must be positive"),
    (dict(lr=0), "lr=0"),
    (dict(beta=-1.0), "beta=-1.0"),
    (dict(pack_width=-1), "pack_width=-1"),
])
def test_bad_rl_config_fails_before_any_model_work(bad, message):
    with pytest.raises(ValueError, match=message):
        rl_cfg(**bad).validate()


def test_step_prompts_depend_only_on_seed_and_step_and_never_repeat_within_a_step():
    from budgetlab.train import step_prompts

    a = [r["id"] for r in step_prompts(ROWS, 4, seed=0, step=3)]
    assert a == [r["id"] for r in step_prompts(ROWS, 4, seed=0, step=3)] and len(set(a)) == 4
    assert a != [r["id"] for r in step_prompts(ROWS, 4, seed=0, step=4)]
    assert len(step_prompts(ROWS[:3], 4, seed=0, step=0)) == 3


def test_idle_sequences_are_left_out_of_the_update_and_the_step_is_the_same():
    # A sequence whose every trained token has advantage 0 adds exactly 0 to PPO-clip's loss and gradient, so the
    # update skips it (RLConfig.skip_idle) and still divides by every sequence: the same loss and gradient to
    # rounding (the micro-batches differ). A step with every sequence idle must still let AdamW move the weights
    # on its momentum and weight decay, exactly as when the zeros are computed.
    import copy

    from budgetlab.packing import TrainSeq, pack_branches
    from budgetlab.update import update

    g = torch.Generator().manual_seed(5)

    def seq(adv):
        return TrainSeq(torch.randint(3, 200, (9,), generator=g).tolist(), [0.0] * 4 + [adv] * 5,
                        [False] * 4 + [True] * 5)

    trunk, branch = seq(0.0), seq(0.0)
    branch.ids[:4] = trunk.ids[:4]
    mixed = [seq(0.0), seq(1.0), seq(0.0), seq(-0.5), pack_branches(trunk, [branch]), seq(0.0)]
    active, all_idle = [seq(1.0), seq(-1.0)], [seq(0.0), seq(0.0)]
    assert [s.idle for s in mixed] == [True, False, True, False, True, True]
    model, tok = warm_started()

    def run(batches, opt_kind, skip, beta=0.0):
        m = copy.deepcopy(model)
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.0) if opt_kind == "sgd" else torch.optim.AdamW(params, lr=1e-2)
        cfg = rl_cfg(precision="fp32", micro_batch=2, skip_idle=skip, beta=beta, normaliser="constant")
        ref = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
        stats = [update(m, opt, b, "ppo", cfg, tok.pad_token_id or 0, reference=ref) for b in batches]
        return stats, [p.grad.clone() for p in params], [p.detach().clone() for p in params]

    (skipped,), grads_skipped, _ = run([mixed], "sgd", True)
    (computed,), grads_computed, _ = run([mixed], "sgd", False)
    assert (skipped["idle_seqs"], computed["idle_seqs"]) == (5, 0)  # the packed pair counts as two sequences
    assert skipped["loss"] == pytest.approx(computed["loss"], rel=1e-5)
    assert skipped["train_tokens"] == computed["train_tokens"]
    for a, b in zip(grads_skipped, grads_computed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    (_, idle), _, after_skipped = run([active, all_idle], "adamw", True)
    (_, _), _, after_computed = run([active, all_idle], "adamw", False)
    _, _, after_one_step = run([active], "adamw", True)
    assert idle["idle_seqs"] == 2 and math.isnan(idle["entropy"]) and skipped["entropy"] > 0  # nothing scored: NaN
    assert all(torch.equal(a, b) for a, b in zip(after_skipped, after_computed))
    assert not all(torch.equal(a, b) for a, b in zip(after_skipped, after_one_step))  # the idle step did move them
    (with_kl,), _, _ = run([mixed], "sgd", True, beta=0.1)  # a KL term pulls every sequence towards the reference
    assert with_kl["idle_seqs"] == 0


def update_gradients(model, tok, seqs, loss_kind, **cfg):
    """(stats, gradients) of one fp32 `update` of a copy of `model` on `seqs`, its weights left as they were
    (SGD, lr 0); the run's starting weights are the KL reference."""
    import copy

    from budgetlab.update import update

    m = copy.deepcopy(model)
    params = [p for p in m.parameters() if p.requires_grad]
    ref = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    stats = update(m, torch.optim.SGD(params, lr=0.0), seqs, loss_kind, rl_cfg(precision="fp32", **cfg),
                   tok.pad_token_id or 0, reference=ref)
    return stats, [p.grad.clone() for p in params]


@pytest.mark.parametrize("loss_kind,normaliser,epochs,beta", [("ppo", "sequence", 1, 0.0), ("ppo", "constant", 2, 0.5),
                                                               ("sft", "sequence", 1, 0.0)])
def test_the_update_reads_each_groups_prompt_once_with_the_same_loss_and_gradient(loss_kind, normaliser, epochs, beta):
    # With RLConfig.share_prompts a group's completions become branches of one row (packing.share_prompts): the
    # prompt is read once and each completion is still scored and normalised as a sequence of its own, so the
    # update must equal the one with a prompt copy per completion, to fp32 rounding. Two groups of three and a
    # lone sequence; in one group a completion starts with the trunk's first token; under PPO one completion is
    # idle (left out before grouping); IBPO's weighted SFT gets unequal weights.
    from budgetlab.packing import TrainSeq, share_prompts

    g = torch.Generator().manual_seed(7)

    def ints(n):
        return torch.randint(3, 200, (n,), generator=g).tolist()

    def group(prompt_len, lengths, advs, weights):
        prompt = ints(prompt_len)
        return [TrainSeq(prompt + ints(n), [0.0] * prompt_len + [a] * n, [False] * prompt_len + [True] * n, w)
                for n, a, w in zip(lengths, advs, weights)]

    first = group(5, [6, 9, 4], [1.0, -0.5, 0.0], [0.5, 2.0, 1.0])
    second = group(3, [7, 5, 8], [0.3, -1.0, 0.7], [1.0, 1.5, 0.25])
    second[1].ids[3] = second[0].ids[3]  # the same first completion token as the trunk's
    seqs = first + second + [TrainSeq(ints(9), [0.0] * 4 + [0.4] * 5, [False] * 4 + [True] * 5)]
    rows = share_prompts([s for s in seqs if loss_kind == "sft" or not s.idle])
    assert [r.n_sequences for r in rows] == ([3, 3, 1] if loss_kind == "sft" else [2, 3, 1])
    assert len(rows[1].ids) == 3 + 7 + (1 + 5) + (1 + 8)  # each branch keeps the prompt's last token
    model, tok = warm_started()

    def run(shared):
        return update_gradients(model, tok, seqs, loss_kind, micro_batch=2, share_prompts=shared,
                                normaliser=normaliser, epochs=epochs, beta=beta)

    shared, grads_shared = run(True)
    plain, grads_plain = run(False)
    for key in ("loss", "entropy", "clip_frac", "kl", "train_tokens", "idle_seqs"):
        assert shared[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-7), key
    for a, b in zip(grads_shared, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    assert any(float(b.abs().max()) > 0 for b in grads_plain)


@pytest.mark.parametrize("loss_kind,normaliser,epochs,beta", [("ppo", "sequence", 1, 0.0), ("ppo", "constant", 2, 0.5),
                                                               ("sft", "sequence", 1, 0.0)])
def test_the_update_packs_plain_sequences_side_by_side_with_the_same_loss_and_gradient(loss_kind, normaliser, epochs,
                                                                                       beta):
    # Packed (RLConfig.pack_width) each sequence attends only to itself from position 0 and is normalised as a
    # sequence of its own, so the update must equal the padded one: loss, entropy, clip share and gradient, to fp32
    # rounding. Lengths differ (padding would be needed), weights differ (IBPO's weighted SFT), and a row of BRPO's
    # packed branches in the batch goes side by side with them (its trunk found by packed_attention).
    from budgetlab.packing import TrainSeq, pack_branches

    g = torch.Generator().manual_seed(6)

    def seq(n, adv, weight=1.0):
        ids = torch.randint(3, 200, (n,), generator=g).tolist()
        return TrainSeq(ids, [0.0] * 4 + [adv] * (n - 4), [False] * 4 + [True] * (n - 4), weight)

    seqs = [seq(9, 1.0, 0.5), seq(14, -0.5), seq(6, 0.7, 2.0), seq(11, -1.0), seq(5, 0.3)]
    if loss_kind == "ppo":
        trunk, branch = seq(10, 0.4), seq(8, -0.2)
        branch.ids[:4] = trunk.ids[:4]
        seqs.append(pack_branches(trunk, [branch]))
    model, tok = warm_started()

    def run(pack_width):
        return update_gradients(model, tok, seqs, loss_kind, micro_batch=4, pack_width=pack_width,
                                normaliser=normaliser, epochs=epochs, beta=beta)

    packed, grads_packed = run(24)  # 2-4 sequences a row
    padded, grads_padded = run(0)
    for key in ("loss", "entropy", "clip_frac", "kl"):
        assert packed[key] == pytest.approx(padded[key], rel=1e-5, abs=1e-7), key
    assert packed["train_tokens"] == padded["train_tokens"]
    for a, b in zip(grads_packed, grads_padded):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    assert any(float(b.abs().max()) > 0 for b in grads_padded)


@pytest.mark.parametrize("method,epochs,beta", [("grpo", 1, 0.0), ("brpo", 2, 0.5), ("ibpo", 1, 0.0)])
def test_the_update_from_the_rollouts_frozen_layer_states_gives_the_same_loss_and_gradient(method, epochs, beta):
    # With LoRA on the top layer only, the rollout keeps every token's state after the bottom (frozen) layer
    # (HFRollout's record_depth, RLConfig.reuse_states) and the update runs the top layer alone on them. Loss,
    # stats and gradients must equal the update that runs every layer, to fp32 rounding, in each method's layout:
    # GRPO's groups read their prompt once, BRPO's summaries are packed branches (two epochs and a KL term), IBPO
    # trains by weighted SFT. The bottom layer must not run in the update at all.
    import dataclasses

    from budgetlab.methods import Step, get_method, summary_budgets
    from budgetlab.prefix import frozen_depth
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout
    from budgetlab.truncation import Markers

    torch.manual_seed(0)
    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(1))
    cfg = rl_cfg(method, precision="fp32", epochs=epochs, beta=beta, quota=1.0).validate()  # IBPO: every trace long
    budgets = summary_budgets(method, cfg.budgets)
    model.eval()
    traces = HFRollout(model, tok, record_depth=frozen_depth(model)).rollout(
        [encode_prompt(tok, r["question"]) for r in ROWS[:2] for _ in range(3)], budgets, max_summary=4)
    rewards = torch.randint(0, 2, (2, 3, len(budgets), 1), generator=torch.Generator().manual_seed(3)).float()
    out = get_method(method)(Step(traces, rewards, budgets, Markers.from_tokenizer(tok), cfg))
    assert out.seqs and all(s.states is not None for s in out.seqs)
    bottom = []
    model.base_model.model.model.layers[0].register_forward_hook(lambda *_: bottom.append(1))

    def run(seqs):
        bottom.clear()
        return (*update_gradients(model, tok, seqs, out.loss, micro_batch=4, epochs=epochs, beta=beta), len(bottom))

    reused, grads_reused, bottom_reused = run(out.seqs)
    plain, grads_plain, bottom_plain = run([dataclasses.replace(s, states=None) for s in out.seqs])
    assert bottom_reused == 0 and bottom_plain > 0
    for key in ("loss", "entropy", "clip_frac", "kl", "train_tokens", "idle_seqs"):
        assert reused[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-7), key
    for a, b in zip(grads_reused, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
    assert any(float(b.abs().max()) > 0 for b in grads_plain)


@pytest.mark.parametrize("reuse", [True, False])
def test_the_rl_loop_hands_the_rollouts_states_to_the_update_unless_told_not_to(tmp_path, monkeypatch, reuse):
    import budgetlab.train as loop

    has_states, real_update = [], loop.update

    def update(model, opt, seqs, *args, **kwargs):
        has_states.extend(s.states is not None for s in seqs)
        return real_update(model, opt, seqs, *args, **kwargs)

    monkeypatch.setattr(loop, "update", update)
    torch.manual_seed(0)
    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)
    train_rl(model, tok, ROWS, rl_cfg("grpo", steps=1, reuse_states=reuse), tmp_path, progress=False)
    assert len(has_states) == 4 and all(h == reuse for h in has_states)
