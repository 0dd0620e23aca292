"""The generation copy: it computes what the trained model computes, before and after a training step."""

import pytest
import torch

from budgetlab.inference import MergedCopy, onednn_has_bf16
from budgetlab.models import load_model

IDS = torch.tensor([[5, 17, 200, 31, 9, 44]])


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def perturbed_lora(seed=0):
    torch.manual_seed(seed)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    with torch.no_grad():  # B starts at zero: give the adapter a real effect
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def test_an_fp32_copy_computes_the_lora_model_exactly_and_follows_a_training_step():
    model = perturbed_lora()
    copy = MergedCopy(model, dtype="float32")
    assert not any(n for n, _ in copy.model.named_modules() if "lora" in n)  # a plain model, adapter merged
    assert copy.model.lm_head.weight is copy.model.model.embed_tokens.weight  # tied like the source, though built
    # without initialisation
    torch.testing.assert_close(logits(copy.model), logits(model), rtol=1e-4, atol=1e-4)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    assert not torch.allclose(logits(copy.model), logits(model), atol=1e-4)  # stale until synced
    copy.sync()
    torch.testing.assert_close(logits(copy.model), logits(model), rtol=1e-4, atol=1e-4)


def test_a_bf16_copy_is_close_and_full_fine_tuning_copies_the_trained_weights():
    model = perturbed_lora()
    bf16 = MergedCopy(model)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert (logits(bf16.model).argmax(-1) == logits(model).argmax(-1)).float().mean() > 0.8
    full, _ = load_model("tiny", adapter="none")
    copy = MergedCopy(full, dtype="float32")
    with torch.no_grad():
        full.model.layers[0].mlp.up_proj.weight.add_(0.1)
    copy.sync()
    torch.testing.assert_close(logits(copy.model), logits(full))


def test_bad_dtype_and_quantised_models_fail_with_one_sentence():
    with pytest.raises(ValueError, match="dtype='float16'"):
        MergedCopy(perturbed_lora(), dtype="float16")
    qlora, _ = load_model("tiny", adapter="qlora", lora_r=4)
    with pytest.raises(ValueError, match="4-bit"):
        MergedCopy(qlora)


onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


@onednn
def test_an_fp32_copy_on_packed_onednn_weights_computes_the_plain_copy_and_follows_a_training_step():
    from budgetlab.inference import PackedLinear

    model = perturbed_lora()
    plain, packed = MergedCopy(model, dtype="float32", kernel="default"), MergedCopy(model, dtype="float32",
                                                                                     kernel="onednn")
    assert (plain.kernel, packed.kernel) == ("default", "onednn")
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in plain.model.modules())
    assert sum(isinstance(m, PackedLinear) for m in packed.model.modules()) == n_linear  # output head included
    torch.testing.assert_close(logits(packed.model), logits(plain.model), rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    packed.sync()  # the merged weights change: their packed copies must follow
    torch.testing.assert_close(logits(packed.model), logits(model), rtol=1e-4, atol=1e-4)
    full, _ = load_model("tiny", adapter="none")  # full fine-tuning: every trained weight copied and repacked
    copy = MergedCopy(full, dtype="float32", kernel="onednn")
    with torch.no_grad():
        full.model.layers[0].mlp.up_proj.weight.add_(0.1)
    copy.sync()
    torch.testing.assert_close(logits(copy.model), logits(full), rtol=1e-5, atol=1e-5)


@onednn
def test_a_packed_copy_decodes_the_same_tokens_greedily():
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout

    model = perturbed_lora()
    tok = load_model("tiny", adapter="lora", lora_r=4)[1]
    prompts = [encode_prompt(tok, q) for q in ("Compute 1 + 2", "Compute 3 * 4 + 5", "Compute 7 - 2")]
    runs = [HFRollout(MergedCopy(model, dtype="float32", kernel=k).model, tok).rollout(
        prompts, [6, 12], max_summary=4, do_sample=False) for k in ("default", "onednn")]
    assert [(t.thinking_ids, [s[0].ids for s in t.summaries]) for t in runs[0]] == \
        [(t.thinking_ids, [s[0].ids for s in t.summaries]) for t in runs[1]]


onednn_bf16 = pytest.mark.skipif(not onednn_has_bf16(), reason="this CPU has no oneDNN bf16 kernels (AVX2 only)")


@onednn_bf16
def test_a_bf16_copy_on_packed_onednn_weights_computes_the_plain_bf16_copy_and_follows_a_training_step():
    from budgetlab.inference import PackedLinear

    model = perturbed_lora()
    plain, packed = MergedCopy(model, kernel="default"), MergedCopy(model, kernel="onednn")
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in plain.model.modules())
    assert sum(isinstance(m, PackedLinear) for m in packed.model.modules()) == n_linear  # output head included
    assert {m.packed.dtype for m in packed.model.modules() if isinstance(m, PackedLinear)} == {torch.bfloat16}
    bf16_rounding = {"rtol": 2e-2, "atol": 2e-2}  # the two kernels may sum in another order
    torch.testing.assert_close(logits(packed.model), logits(plain.model), **bf16_rounding)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    before = logits(packed.model)
    plain.sync(), packed.sync()  # the merged weights change: their packed copies must follow
    assert not torch.allclose(logits(packed.model), before, **bf16_rounding)
    torch.testing.assert_close(logits(packed.model), logits(plain.model), **bf16_rounding)


def test_the_kernel_choice_rule_and_where_oneDNN_is_never_used(monkeypatch):
    import budgetlab.inference as inference
    from budgetlab.precision import is_faster

    assert is_faster(15.5, 23.2) and not is_faster(1.0, 1.05) and not is_faster(0.0, 1.0)  # fixed timings
    model = perturbed_lora()
    for bf16_kernels in (False, True):  # an AVX2-only CPU, then one with oneDNN bf16 kernels
        monkeypatch.setattr(inference, "onednn_has_bf16", lambda: bf16_kernels)
        for faster in (False, True):  # the kernel timing replaced by its two outcomes
            monkeypatch.setattr(inference, "onednn_is_faster", lambda *shape: faster)
            expected = "onednn" if faster else "default"
            assert MergedCopy(model, dtype="float32").kernel == expected
            assert MergedCopy(model, dtype="bfloat16").kernel == (expected if bf16_kernels else "default")
    with pytest.raises(ValueError, match="kernel='fast'"):
        MergedCopy(model, dtype="float32", kernel="fast")
    monkeypatch.setattr(inference, "onednn_has_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"kernel='onednn' packs float32 weights on a CPU \(bfloat16 ones too where "
                                         r"oneDNN has bf16 kernels\); this copy is bfloat16 on cpu"):
        MergedCopy(model, dtype="bfloat16", kernel="onednn")


def test_timing_the_kernels_leaves_the_callers_random_stream_alone():
    from budgetlab.inference import onednn_is_faster

    onednn_is_faster.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    onednn_is_faster(32, 96)  # draws a weight and an input to time, inside torch.random.fork_rng
    torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)


@onednn
def test_the_evaluation_decodes_with_a_packed_copy_and_grades_the_same_table(monkeypatch):
    import budgetlab.inference as inference
    from budgetlab.anytime import evaluate_model

    model = perturbed_lora()
    tok = load_model("tiny", adapter="lora", lora_r=4)[1]
    rows = [{"id": str(i), "question": q, "answer": a, "level": 1}
            for i, (q, a) in enumerate([("Compute 1 + 2", "3"), ("Compute 3 * 4 + 5", "17"), ("Compute 7 - 2", "5")])]
    tables = {}
    for faster in (False, True):  # the kernel timing replaced by its two outcomes
        monkeypatch.setattr(inference, "onednn_is_faster", lambda *shape: faster)
        assert (inference.packed_copy(model) is not None) == faster
        assert (inference.evaluation_decoder(model) is not model) == faster  # what evaluate_model decodes with
        tables[faster] = evaluate_model(model, tok, rows, [4, 8], max_summary=4, precision="fp32", progress=False)
    cols = ["id", "budget", "n_thinking", "summary", "correct"]
    assert tables[True][cols].equals(tables[False][cols])
    with model.disable_adapter():  # the untrained model: the copy holds the base weights alone
        torch.testing.assert_close(logits(inference.packed_copy(model).model), logits(model), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits(inference.packed_copy(model).model), logits(model), rtol=1e-4, atol=1e-4)
    copy = inference.packed_copy(model)
    assert inference.packed_copy(copy.model) is None  # a copy already: decoded as it is
    assert inference.packed_copy(model.to(torch.bfloat16)) is None  # bf16 models keep their own path


def test_a_bf16_evaluation_decodes_with_the_copy_rl_samples_from():
    import budgetlab.inference as inference
    from budgetlab.anytime import evaluate_model
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout

    model = perturbed_lora()
    tok = load_model("tiny", adapter="lora", lora_r=4)[1]
    decoder = inference.evaluation_decoder(model, bf16=True)
    assert decoder is not model and next(decoder.parameters()).dtype == torch.bfloat16
    assert not any("lora" in n for n, _ in decoder.named_modules())  # merged, as RL's generation copy
    rows = [{"id": str(i), "question": q, "answer": a, "level": 1}
            for i, (q, a) in enumerate([("Compute 1 + 2", "3"), ("Compute 3 * 4 + 5", "17"), ("Compute 7 - 2", "5")])]
    prompts = [encode_prompt(tok, r["question"]) for r in rows]
    for adapter_off in (False, True):  # the trained model, then the untrained one (its base weights alone)
        with model.disable_adapter() if adapter_off else torch.no_grad():
            table = evaluate_model(model, tok, rows, [4, 8], max_summary=4, precision="bf16", progress=False)
            copy = inference.generation_copy(model, "bfloat16")
            traces = HFRollout(copy.model, tok, summary_bf16=True).rollout(prompts, [4, 8], max_summary=4,
                                                                           do_sample=False)
        assert table["n_thinking"].tolist() == [tr.n_thinking for tr in traces for _ in (4, 8)]
        assert table["summary"].tolist() == [tok.decode(tr.summaries[j][0].ids, skip_special_tokens=True)
                                             for tr in traces for j in range(2)]
    for kernel in ("default", "onednn") if inference.onednn_has_bf16() else ("default",):
        copy = inference.MergedCopy(model, "bfloat16", kernel)
        assert inference.evaluation_decoder(copy.model, bf16=True) is copy.model  # a copy already (the RL probe's)
    qlora, _ = load_model("tiny", adapter="qlora", lora_r=4)
    assert inference.evaluation_decoder(qlora, bf16=True) is qlora  # cannot be merged: summaries under autocast
