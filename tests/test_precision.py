"""budgetlab.precision: bf16 only where it is measured faster on the machine at hand (SPEC §4)."""

import json
from types import SimpleNamespace

import pytest
import torch

from budgetlab import precision
from budgetlab.precision import check_precision, choose, describe, model_shape, resolve, use_bf16


def fixed_timings(monkeypatch, fp32_s: float, bf16_s: float) -> list:
    """Replace the timed matmul with fixed seconds; returns the list of shapes it was asked to time."""
    asked = []

    def measured(device_type, hidden, intermediate):
        asked.append((device_type, hidden, intermediate))
        return fp32_s, bf16_s

    monkeypatch.setattr(precision, "_measured", measured)
    return asked


def test_bf16_is_chosen_only_when_it_is_at_least_ten_percent_faster():
    assert choose(4.0, 1.0) == "bf16"  # 4x faster (AMX)
    assert choose(1.1, 1.0) == "bf16"  # exactly the 1.1 threshold
    assert choose(1.05, 1.0) == "fp32"  # 5% faster: within timing noise, fp32 is exact
    assert choose(4.8, 125.0) == "fp32"  # an AVX2 CPU emulating bf16 (SPEC §4: 4.2-5.5 s vs 118-131 s a step)


def test_non_positive_timings_fall_back_to_fp32():
    assert choose(0.0, 1.0) == "fp32" and choose(1.0, 0.0) == "fp32" and choose(-1.0, -2.0) == "fp32"


def test_auto_on_a_cpu_without_native_bf16_picks_fp32(monkeypatch):
    fixed_timings(monkeypatch, fp32_s=0.0049, bf16_s=0.0203)  # a bare linear at 37.1 vs 8.9 GFLOP/s
    record = resolve("auto")
    assert record["precision"] == "fp32" and record["setting"] == "auto"
    assert record["fp32_ms"] == 4.9 and record["bf16_ms"] == 20.3
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_auto_on_a_cpu_with_native_bf16_picks_bf16(monkeypatch):
    fixed_timings(monkeypatch, fp32_s=0.0038, bf16_s=0.0009)
    assert resolve("auto")["precision"] == "bf16"


def test_an_explicit_setting_overrides_the_measurement_and_times_nothing(monkeypatch):
    asked = fixed_timings(monkeypatch, fp32_s=0.004, bf16_s=0.001)
    assert resolve("fp32")["precision"] == "fp32"
    assert resolve("bf16")["precision"] == "bf16"
    assert asked == [] and "fp32_ms" not in resolve("fp32")


def test_auto_times_the_models_own_shapes_and_the_default_shape_without_a_model(monkeypatch):
    asked = fixed_timings(monkeypatch, fp32_s=2.0, bf16_s=1.0)
    model = torch.nn.Linear(3, 3)
    model.config = type("Config", (), {"hidden_size": 64, "intermediate_size": 128})()
    assert use_bf16("auto", model) is True
    resolve("auto")
    assert asked == [("cpu", 64, 128), ("cpu", *precision.DEFAULT_SHAPE)]


def test_a_bad_setting_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match=r"precision='fp16' is not accepted; use one of \['auto', 'fp32', 'bf16'\]"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="precision='half'"):
        resolve("half")


def test_the_real_measurement_returns_positive_timings_and_a_valid_choice():
    # not a speed claim (those live in benchmarks/): the timed matmul runs and yields a choice
    record = resolve("auto", shape=(32, 64))
    assert record["fp32_ms"] > 0 and record["bf16_ms"] > 0 and record["precision"] in ("fp32", "bf16")
    assert record["shape"] == [precision.ROWS, 32, 64]


def test_timings_are_interleaved_after_a_warm_up_and_the_fastest_run_of_each_counts(monkeypatch):
    clock, calls = iter([0, 5, 5, 6, 6, 9, 9, 11]), []  # fn a: 5 then 3 s; fn b: 1 then 2 s
    monkeypatch.setattr(precision, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    best = precision.fastest_interleaved([lambda: calls.append("a"), lambda: calls.append("b")], repeats=2)
    assert calls == ["a", "b"] * 3 and best == [3, 1]  # one warm-up call each, untimed, then a b a b


def test_describe_names_the_choice_the_timings_and_the_cpu(monkeypatch):
    fixed_timings(monkeypatch, fp32_s=0.00377, bf16_s=0.00087)
    line = describe(resolve("auto"))
    assert line.startswith("bf16 (auto: linear 512x576x1536 bf16 0.87 ms, fp32 3.77 ms; cpu ")
    assert describe(resolve("fp32")).startswith("fp32 (as set; cpu ")
    amx = {"setting": "fp32", "precision": "fp32", "device": "cpu", "cpu_capability": "AVX512", "cpu_kind": "AMX"}
    assert describe(amx) == "fp32 (as set; cpu AVX512, AMX)"
    assert describe({**amx, "cpu_capability": "AVX2", "cpu_kind": "AVX2"}) == "fp32 (as set; cpu AVX2)"
    del amx["cpu_kind"]  # a run's config.json written before the kind was recorded, read back on --resume
    assert describe(amx) == "fp32 (as set; cpu AVX512)"


@pytest.mark.parametrize("capability, amx, avx512_bf16, kind", [
    ("AVX512", True, True, "AMX"),  # Intel Xeon (Sapphire Rapids on): AMX tiles, AVX512-BF16 too
    ("AVX512", False, True, "AVX512-BF16"),  # AMD EPYC Zen 4: bf16 dot products, no AMX
    ("AVX512", False, False, "AVX512"),  # AVX512 without native bf16
    ("AVX2", False, False, "AVX2"),
    ("AVX2", True, True, "AVX2"),  # torch capped at AVX2 (ATEN_CPU_CAPABILITY=avx2): the capability decides
])
def test_cpu_kind_tells_apart_what_the_capability_names_alike(monkeypatch, capability, amx, avx512_bf16, kind):
    monkeypatch.setattr(precision, "cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert precision.cpu_kind() == kind
    assert resolve("fp32")["cpu_kind"] == kind


def test_model_shape_reads_a_config_without_loading_weights(tmp_path):
    assert model_shape("default") is None  # the embedded model's shape is DEFAULT_SHAPE, no conversion needed
    assert model_shape("tiny") == (64, 128)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 896, "intermediate_size": 4864}))
    assert model_shape(str(tmp_path)) == (896, 4864)


def test_the_pipeline_records_the_choice_and_a_resumed_run_keeps_it(monkeypatch, tmp_path):
    from budgetlab.pipeline import run_precision

    fixed_timings(monkeypatch, fp32_s=0.004, bf16_s=0.001)
    first = run_precision({"PRECISION": "auto", "MODEL": "tiny"}, tmp_path, resume=False)
    assert first["precision"] == "bf16"
    (tmp_path / "config.json").write_text(json.dumps({"PRECISION": "bf16", "PRECISION_CHOICE": first}))
    fixed_timings(monkeypatch, fp32_s=0.001, bf16_s=0.004)  # the machine now measures the other way
    assert run_precision({"PRECISION": "auto", "MODEL": "tiny"}, tmp_path, resume=True) == first
    assert run_precision({"PRECISION": "auto", "MODEL": "tiny"}, tmp_path, resume=False)["precision"] == "fp32"


def test_a_bad_precision_parameter_stops_the_pipeline_before_any_work():
    from budgetlab.params import load_params

    with pytest.raises(ValueError, match=r"PRECISION='fp16' is not accepted"):
        load_params("smoke", {"PRECISION": "fp16"})


def _loss_and_grads(model, t, frozen=None):
    """The packed SFT loss of batch `t` under bf16 autocast and the trainable gradients, with `frozen` active."""
    import contextlib

    from budgetlab.losses import packed_sft_loss, token_logprobs

    model.zero_grad(set_to_none=True)
    with frozen.active() if frozen else contextlib.nullcontext():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logp, _ = token_logprobs(model, t["ids"], t["attention"], mask=t["mask"], position=t.get("position"))
        loss = packed_sft_loss(logp, t["adv"])
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_holding_the_frozen_base_in_bf16_and_lora_inputs_uncast_gives_autocasts_loss_and_gradients_bit_for_bit():
    from budgetlab.packing import collate, pack_examples
    from budgetlab.models import load_model
    from budgetlab.precision import FrozenInBf16
    from budgetlab.prompts import sft_example
    from budgetlab.synthetic import make_testbed

    torch.manual_seed(0)
    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)  # layer 0 wholly frozen, head tied
    model.train()
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in make_testbed(6, seed=1)]
    t = collate(pack_examples(examples, 256), tok.pad_token_id)
    frozen = FrozenInBf16(model)
    loss, grads = _loss_and_grads(model, t)
    held_loss, held_grads = _loss_and_grads(model, t, frozen)
    # autocast casts to exactly the values held, and a bf16 input cast to fp32 and back is itself: the same bits
    assert torch.equal(loss, held_loss)
    assert grads.keys() == held_grads.keys() and all(torch.equal(grads[n], held_grads[n]) for n in grads)
    # 2 layers x 7 frozen base projections + the output head; every one is fp32 again outside, the tie restored
    assert len(frozen.swaps) == 15
    inner = model.get_base_model()
    assert inner.lm_head.weight is inner.model.embed_tokens.weight
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with frozen.active():
        assert inner.lm_head.weight.dtype == torch.bfloat16 and inner.model.embed_tokens.weight.dtype == torch.float32
        assert inner.model.layers[1].mlp.up_proj.lora_A["default"].weight.dtype == torch.float32  # trained: as is
        assert inner.model.layers[1].mlp.up_proj.cast_input_dtype_enabled is False  # peft's input cast skipped
    assert inner.model.layers[1].mlp.up_proj.cast_input_dtype_enabled is True  # and back outside
    off = FrozenInBf16(model, enabled=False)
    assert off.swaps == []  # fp32 runs hold nothing
    with off.active():
        assert inner.model.layers[1].mlp.up_proj.cast_input_dtype_enabled is True  # and change nothing


def test_sft_and_the_rl_update_give_the_same_numbers_with_the_frozen_base_held_in_bf16(tmp_path, monkeypatch):
    import budgetlab.sft as sft_module
    from budgetlab.packing import TrainSeq
    from budgetlab.models import load_model
    from budgetlab.precision import FrozenInBf16
    from budgetlab.prompts import sft_example
    from budgetlab.sft import SFTConfig, sft
    from budgetlab.synthetic import make_synthetic
    from budgetlab.train import RLConfig
    from budgetlab.update import update

    rows = make_synthetic(8, levels=(1, 2), seed=0)
    # two epochs, so the old log-probs' pass runs too; micro-batches of 3 split the 8 sequences
    cfg = RLConfig(method="grpo", precision="bf16", lr=1e-2, epochs=2, micro_batch=3).validate()

    def run(tag, held):
        torch.manual_seed(0)
        model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=1)
        examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in rows]
        losses = [r["loss"] for r in sft(model, tok, examples, SFTConfig(steps=3, batch_size=4, precision="bf16"),
                                         tmp_path / tag, progress=False)]
        seqs = [TrainSeq(e.ids, [(1.0 if i % 2 else -1.0) * a for a in e.adv], e.mask) for i, e in enumerate(examples)]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        model.train()
        with FrozenInBf16(model, enabled=held).active():  # as train_rl wraps its update
            stats = update(model, opt, seqs, "ppo", cfg, tok.pad_token_id)
        return losses, stats, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    held_losses, held_stats, held_weights = run("held", True)
    monkeypatch.setattr(sft_module, "FrozenInBf16", lambda model, enabled=True: FrozenInBf16(model, enabled=False))
    losses, stats, weights = run("plain", False)
    assert losses == held_losses and stats == held_stats and stats["loss"] != 0
    assert all(torch.equal(weights[n], held_weights[n]) for n in weights)
