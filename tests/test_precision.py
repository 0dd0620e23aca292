"""budgetlab.precision: bf16 only where it is measured faster on the machine at hand (SPEC §4)."""

import json

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


def test_describe_names_the_choice_the_timings_and_the_cpu(monkeypatch):
    fixed_timings(monkeypatch, fp32_s=0.00377, bf16_s=0.00087)
    line = describe(resolve("auto"))
    assert line.startswith("bf16 (auto: linear 512x576x1536 bf16 0.87 ms, fp32 3.77 ms; cpu ")
    assert describe(resolve("fp32")).startswith("fp32 (as set; cpu ")


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
