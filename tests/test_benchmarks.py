"""The benchmarks run and report what they claim to measure (no speed is asserted here: see benchmarks/)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from budgetlab import precision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_ceiling  # noqa: E402
import table  # noqa: E402


@pytest.mark.slow
def test_ceiling_benchmark_counts_forward_and_backward_flops_and_reports_ratios_below_its_ceilings():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ceiling.py"), "--model", "tiny",
                          "--lora-layers", "2", "--steps", "1", "--rows", "2", "--tokens", "4"],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert 0 < r["sft_over_peak"] and 0 < r["rl_update_over_peak"] and 0 < r["rollout_over_ceiling"]
    assert r["cpu_capability"] and r["precision"]["precision"] in ("fp32", "bf16")
    assert r["cpu_kind"] == precision.cpu_kind()
    assert "of the matmul peak; the matmuls take" in out and "bare batched decode loop" in out and "(cpu " in out
    assert list(r["decode_ceiling_by_rows"]) == ["2", "4", "8"] and min(r["decode_ceiling_by_rows"].values()) > 0
    for name in ("sft", "rl_update"):  # matmuls below the peak: the bound lies above what the step reaches
        assert 0 < r[f"{name}_matmul_share"] < 1 and r[f"{name}_over_peak"] < r[f"{name}_bound_at_peak"] < 1


def test_the_bound_at_peak_keeps_the_time_outside_the_matmuls():
    # 100 FLOPs at a peak of 10/s take 10 s; a 40 s step with half its time outside the matmuls keeps those 20 s
    assert bench_ceiling.bound_at_peak(100, 40.0, 0.5, 10.0) == pytest.approx(1 / 3)
    assert bench_ceiling.bound_at_peak(100, 40.0, 1.0, 10.0) == 1.0  # all matmul: the peak itself
    assert bench_ceiling.bound_at_peak(100, 40.0, 0.0, 10.0) == pytest.approx(10 / 50)


@pytest.mark.slow
def test_a_counted_training_step_holds_its_backward_too():
    import torch

    from budgetlab.losses import token_logprobs
    from budgetlab.models import load_model
    from budgetlab.packing import collate
    from budgetlab.prompts import sft_example
    from budgetlab.synthetic import make_testbed

    model, tok = load_model("tiny", adapter="lora", lora_r=4, lora_layers=2)
    examples = [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in make_testbed(2, seed=1)]
    t = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        forward = bench_ceiling.counted_flops(lambda: token_logprobs(model, t["ids"], t["attention"], False, None,
                                                                     t["mask"]))
    step, seconds, share = bench_ceiling.sft_step_seconds(model, tok, examples, bf16=False, steps=1)
    # backward computes at least the input gradients of every LoRA layer's base matmuls: more than half again
    assert step > 1.5 * forward > 0 and seconds > 0 and 0 < share < 1


def test_bench_table_lists_every_figure_with_its_goal_and_the_main_job_only_when_given():
    trl = {"ratio": 0.4, "ratio_brpo_over_grpo": 1.3, "sampling_over_ceiling": 0.7,
           "brpo_gen_tokens_per_step": 1500.0, "ours_gen_tokens_per_step": 1000.0}
    anytime = {"ratio": 1.4, "ours_over_ceiling": 0.5, "ratio_at_ceiling": 1.45}
    ceiling = {"rollout_over_ceiling": 0.3, "decode_4x_rows_over_1x": 2.5, "sft_over_peak": 0.1,
               "rl_update_over_peak": 0.2, "sft_bound_at_peak": 0.15, "rl_update_bound_at_peak": 0.25}
    t = table.table(trl, anytime, ceiling, None)
    assert list(t["measured"]) == [0.4, 0.7, 1.3, 1.5, 1.4, 0.5, 1.45, 0.3, 2.5, 0.1, 0.15, 0.2, 0.25]
    beside = t["figure"].str.endswith(("(ceiling)", "(bound)"))  # under the figure it bounds
    assert beside.sum() == 7 and t.loc[~beside, "goal"].str.len().gt(0).all()
    t = table.table(trl, anytime, ceiling, {"sft_stage_s": 318.0, "rl_samples_per_min": 90.0})
    assert list(t["measured"])[-2:] == [318.0, 90.0]
    by_method = {"grpo": 100.0, "ibpo": 80.0, "l1": 70.0}  # a row each after the mean; l1 has no issue-time figure
    t = table.table(trl, anytime, ceiling, {"sft_stage_s": 318.0, "rl_samples_per_min": 83.3,
                                            "rl_samples_per_min_by_method": by_method})
    assert list(t["measured"])[-3:] == [100.0, 80.0, 70.0]
    assert list(t["goal"])[-3:] == ["≥ 169", "≥ 245", ""]  # 3 × 64 samples in 68 s and in 47 s; none for l1


@pytest.mark.slow
@pytest.mark.parametrize("script, args, keys", [
    ("bench_anytime_eval.py", ["--problems", "2", "--rounds", "1", "--max-thinking", "4", "--budgets", "2",
                               "--max-summary", "2"], ("ratio", "plain_over_ceiling", "ours_over_ceiling",
                                                "ratio_at_ceiling")),
    ("bench_grpo_vs_trl.py", ["--steps", "1", "--rounds", "1", "--warmup", "0", "--no-trl", "--no-fp32",
                              "--max-tokens", "4", "--summary-tokens", "2"],
     ("ratio_brpo_over_grpo", "sampling_over_ceiling")),
])
def test_the_peer_benchmarks_print_their_ceiling_ratio_beside_the_peer_ratio(script, args, keys):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--model", "tiny", *args],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert all(r[k] is not None and r[k] > 0 for k in keys), {k: r.get(k) for k in keys}


@pytest.mark.slow
def test_the_profile_script_writes_an_sft_and_a_grpo_table_named_by_cpu_and_precision(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_steps.py"), "--model", "tiny",
                    "--lora-layers", "2", "--precision", "fp32", "--out", str(tmp_path)],
                   capture_output=True, text=True, check=True, cwd=ROOT)
    page = tmp_path / f"{precision.cpu_kind().lower().replace('-', '')}-fp32.md"  # e.g. amx-fp32.md
    text = page.read_text()
    assert "CPU capability" in text and ("OMP_WAIT_POLICY=" in text or "GOMP_SPINCOUNT=" in text)
    assert text.count("Self CPU %") == 2 and "One GRPO step" in text and "sampling (rollout and grading)" in text
