"""The frozen prefix: the decoder layers below the lowest trainable one, run once per SFT example.

With LoRA on the top k decoder layers only (`LORA_LAYERS`), the embeddings and the layers below never change
during SFT, so an example's hidden state after them is the same at every step that draws it. `sft` computes
it once per example and each step runs only the layers above (`layer_range`, with the states as
`token_logprobs`' `embeds`); for the default model's warm start that is the top 10 of 30 layers (LOG.md gives
the time saved).

The states are computed in a fixed order, whatever step a run starts from, so a resumed run uses the very
values an uninterrupted one did. They come from other packed rows than a step's own, so they equal the plain
path's only to rounding (tests/test_prefix.py states the tolerance).

The RL update's sequences are new every step, but the rollout that sampled them already ran the same frozen
layers over every token (its bottom layers hold the base's weights: LoRA is on the top layers only).
`recording_states` keeps what those layers wrote while the rollout decodes (`decode.decode(record=...)`), and
the update runs only the layers above on them (`RLConfig.reuse_states`).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from budgetlab.head_logprobs import plain_head
from budgetlab.packing import TrainSeq, collate, pack_examples, pack_order

CACHE_BYTES = 2 << 30  # the most memory the states of one SFT run may take (fp32)


def frozen_depth(model) -> int:
    """How many leading decoder layers hold no trainable weight; 0 when nothing can be skipped.

    Nothing can when the embeddings train, no layer trains, or the model is not a plain-head decoder
    (`head_logprobs.plain_head`) with `layers` and `norm`."""
    split = plain_head(model)
    if split is None:
        return 0
    decoder = split[0]
    layers, embed = getattr(decoder, "layers", None), decoder.get_input_embeddings()
    if layers is None or getattr(decoder, "norm", None) is None or any(p.requires_grad for p in embed.parameters()):
        return 0
    trains = [any(p.requires_grad for p in layer.parameters()) for layer in layers]
    return trains.index(True) if True in trains else 0  # no layer trains: nothing above the prefix to run


def worth_caching(draws: int, lengths: Sequence[int], hidden: int, limit: int = CACHE_BYTES) -> bool:
    """Cache when the run draws each example at least twice on average (`draws` examples in all) and the fp32
    states of all examples fit in `limit` bytes; otherwise the states would cost more than they save."""
    return bool(lengths) and draws >= 2 * len(lengths) and 4 * hidden * sum(lengths) <= limit


@contextlib.contextmanager
def layer_range(decoder, start: int, stop: int | None = None):
    """`decoder` runs only its layers [start, stop) while inside; below the top layer, without its final norm,
    so the output is the residual stream the next layer reads."""
    layers, norm = decoder.layers, decoder.norm
    stop = len(layers) if stop is None else stop
    decoder.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if stop < len(layers):
        decoder.norm = torch.nn.Identity()
    try:
        yield decoder
    finally:
        decoder.layers, decoder.norm = layers, norm


@contextlib.contextmanager
def recording_states(model, depth: int):
    """While inside, every forward of `model` appends to the yielded list the [batch, tokens, hidden] residual
    stream after its first `depth` decoder layers (the input of layer `depth`), as fp32."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer = base.get_decoder().layers[depth - 1]
    seen: list[torch.Tensor] = []

    def keep(_module, _args, output):
        seen.append((output[0] if isinstance(output, tuple) else output).float())

    handle = layer.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()


@torch.no_grad()
def prefix_states(model, examples: Sequence[TrainSeq], depth: int, pad_id: int, width: int = 256,
                  group: int = 16) -> list[torch.Tensor]:
    """Each example's [len, hidden] state after the first `depth` decoder layers.

    The examples go in index order, `group` at a time, packed into rows of `width` tokens, so the values
    depend on the examples alone. Run it under the autocast (and `FrozenInBf16`) of the passes that use it."""
    decoder = plain_head(model)[0]
    device = next(model.parameters()).device
    states: list[torch.Tensor] = []
    for g in range(0, len(examples), group):
        part = list(examples[g:g + group])
        order = pack_order([len(s.ids) for s in part], width)
        t = {k: v.to(device) for k, v in collate(pack_examples(part, width), pad_id).items()}
        with layer_range(decoder, 0, depth):
            hidden = decoder(input_ids=t["ids"], attention_mask=t["attention"], position_ids=t["position"],
                             use_cache=False).last_hidden_state
        mine: dict[int, torch.Tensor] = {}
        for r, row in enumerate(order):
            at = 0
            for i in row:
                mine[i] = hidden[r, at:at + len(part[i].ids)].clone()
                at += len(part[i].ids)
        states += [mine[i] for i in range(len(part))]
    return states
