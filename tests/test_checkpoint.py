"""Faults lose nothing: a NaN loss stops the run before it touches the weights, a failed or killed checkpoint
write leaves the previous checkpoint loadable, a truncated or foreign checkpoint is refused and the one before
it is used, and an interrupted SFT resumes to exactly the weights of an uninterrupted one."""

import errno
import os
import shutil
from types import SimpleNamespace

import pytest
import torch

import budgetlab.sft as sft_mod
import budgetlab.update as update_mod
from budgetlab.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, resume_checkpoint, save_checkpoint
from budgetlab.loop import NonFiniteLoss
from budgetlab.models import load_model, trainable_state
from budgetlab.prompts import sft_example
from budgetlab.sft import SFTConfig, sft
from budgetlab.synthetic import make_synthetic
from budgetlab.train import RLConfig, train_rl

ROWS = make_synthetic(24, levels=(1, 2), seed=0)


def tiny(r=4, layers=None):
    torch.manual_seed(0)
    return load_model("tiny", adapter="lora", lora_r=r, lora_layers=layers)


def opt_for(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def poisoned(real, at_call):
    """`real` with its result turned NaN on call number `at_call` (0-based) and after."""
    calls = []

    def fn(*args, **kw):
        out = real(*args, **kw)
        calls.append(1)
        if len(calls) <= at_call:
            return out
        return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")
    return fn


def test_a_nan_rl_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model, tok = tiny()
    monkeypatch.setattr(update_mod, "ppo_clip_loss", poisoned(update_mod.ppo_clip_loss, at_call=2))  # step 3
    # skip_idle off: the tiny model's groups all score 0, and an idle step computes no loss to poison
    cfg = RLConfig(method="grpo", steps=4, prompts_per_step=2, generations=2, budgets=[3, 6], max_summary=4,
                   checkpoint_every=2, precision="fp32", skip_idle=False)
    with pytest.raises(NonFiniteLoss, match=r"RL step 3: the loss is nan, so the run stops before applying it; "
                                            r"its last good checkpoint .*step_000002 is kept"):
        train_rl(model, tok, ROWS, cfg, tmp_path, progress=False)
    assert all(torch.isfinite(v).all() for v in trainable_state(model).values())  # the NaN step was not applied
    fresh, _ = tiny()
    assert load_checkpoint(latest_checkpoint(tmp_path), fresh, opt_for(fresh))[0] == 2


def test_a_nan_sft_loss_names_its_step(tmp_path, monkeypatch):
    model, tok = tiny()
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS[:4]]
    monkeypatch.setattr(sft_mod, "packed_sft_loss", poisoned(sft_mod.packed_sft_loss, at_call=1))
    with pytest.raises(NonFiniteLoss, match="SFT step 2: the loss is nan.*no checkpoint was written yet"):
        sft(model, tok, examples, SFTConfig(steps=3, batch_size=4, checkpoint_every=5, precision="fp32"), tmp_path,
            progress=False)
    assert all(torch.isfinite(v).all() for v in trainable_state(model).values())


def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    model, _ = tiny()
    opt = opt_for(model)
    save_checkpoint(tmp_path, model, opt, 2, [{"step": 1}, {"step": 2}])

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="checkpoint of step 4 could not be written .*No space left on device.*"
                                      "step_000002 is kept for a resume"):
        save_checkpoint(tmp_path, model, opt, 4, [])
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000002"]  # no half folder
    assert load_checkpoint(tmp_path / "checkpoints" / "step_000002", model, opt) == (2, [{"step": 1}, {"step": 2}])


def test_a_full_disk_that_torch_reports_as_a_runtime_error_is_named_as_one(tmp_path, monkeypatch):
    # what torch.save raised when the disk filled during a study on 2026-12-01: a RuntimeError, not an OSError
    model, _ = tiny()
    opt = opt_for(model)
    save_checkpoint(tmp_path, model, opt, 2, [])

    def full(*args, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3069184 vs 3069076")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=9 << 20))
    with pytest.raises(OSError, match="checkpoint of step 4 could not be written .*No space left on device: 9 MB "
                                      "free.*unexpected pos.*step_000002 is kept for a resume"):
        save_checkpoint(tmp_path, model, opt, 4, [])
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000002"]


def test_a_kill_mid_write_leaves_a_hidden_folder_that_resume_ignores(tmp_path):
    model, _ = tiny()
    save_checkpoint(tmp_path, model, opt_for(model), 2, [])
    half = tmp_path / "checkpoints" / ".step_000004.abc.tmp"  # what atomic_dir's temp folder looks like mid-write
    half.mkdir()
    (half / "trainable.pt").write_bytes(b"PK\x03\x04 half")
    assert resume_checkpoint(tmp_path, model, opt_for(model))[0] == 2


def test_a_truncated_newest_checkpoint_is_named_and_the_one_before_it_used(tmp_path, capsys):
    model, _ = tiny()
    opt = opt_for(model)
    save_checkpoint(tmp_path, model, opt, 2, [{"step": 2}])
    newest = save_checkpoint(tmp_path, model, opt, 4, [{"step": 4}])
    blob = (newest / "trainable.pt").read_bytes()
    (newest / "trainable.pt").write_bytes(blob[: len(blob) // 2])
    assert resume_checkpoint(tmp_path, model, opt)[:2] == (2, [{"step": 2}])
    assert f"checkpoint {newest} cannot be read" in capsys.readouterr().err


def test_a_checkpoint_of_another_model_is_refused_before_any_weight_changes(tmp_path):
    other, _ = tiny(r=8)
    save_checkpoint(tmp_path, other, opt_for(other), 2, [])
    model, _ = tiny(r=4)
    before = trainable_state(model)
    with pytest.raises(CheckpointError, match=r"does not match this model: .* has shape \(8, \d+\), the model's is \(4"):
        load_checkpoint(latest_checkpoint(tmp_path), model, opt_for(model))
    assert all(torch.equal(before[k], v) for k, v in trainable_state(model).items())
    assert resume_checkpoint(tmp_path, model, opt_for(model)) == (0, [], None)  # nothing usable: start over


def test_checkpoints_load_weights_only_so_a_pickled_object_is_refused(tmp_path):
    model, _ = tiny()
    ck = save_checkpoint(tmp_path, model, opt_for(model), 2, [])
    torch.save({"x": os.getcwd}, ck / "trainable.pt")  # a pickled function, not a tensor
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(ck, model)


@pytest.mark.parametrize("layers", [None, 1])  # LoRA on the top layer: the frozen prefix is cached
def test_an_interrupted_sft_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch, layers):
    examples_of = lambda tok: [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS[:8]]
    cfg = SFTConfig(steps=6, batch_size=4, checkpoint_every=2, precision="fp32")
    model, tok = tiny(layers=layers)
    full = sft(model, tok, examples_of(tok), cfg, tmp_path / "full", progress=False)
    want = trainable_state(model)
    model, tok = tiny(layers=layers)  # killed during step 4: steps 1-3 ran, the last checkpoint is step 2
    monkeypatch.setattr(sft_mod, "progress_bar", lambda it, enabled, desc: [s for s in it if s < 3])
    sft(model, tok, examples_of(tok), cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path / "cut").name == "step_000002"
    model, tok = tiny(layers=layers)
    resumed = sft(model, tok, examples_of(tok), cfg, tmp_path / "cut", progress=False, resume=True)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert all(torch.equal(want[k], v) for k, v in trainable_state(model).items())
