"""A decode loop for transformers causal LMs whose finished rows leave the batch.

`generate` keeps every row in the batch until the last one stops, so a row that closed its thinking after 20
tokens still costs a row of every matmul for the remaining steps. On the testbed's warm start only 49-71% of
the thinking pass's row-steps and 86% of the summaries' are tokens a row still needs, and a decode step on
SmolLM2-135M costs a fixed ~60 ms plus ~2.7 ms a row on a 2-core AVX2 CPU (LOG.md, twelfth session).

`decode` takes the steps `generate(do_sample=False, logits_processor=[sampler])` takes: the same inputs and
position ids (the attention mask's running count, as transformers computes them), one uniform per row of the
whole batch on every step (the draws `generate` makes), a row done at EOS or when `stop` says so (padded
after), and the loop ends when every row is done or after `max_new` steps. It feeds only the rows not yet
done; with `keep_cache`, a done row is fed once more, so that the cache holds its last token as `generate`'s
does, and then leaves. A row's logits then come out of matmuls over fewer rows, which moves their last bits (~4e-5 in
SmolLM2's logits, LOG.md), so a draw that falls on a boundary can differ from `generate`'s; the tests
check token equality on a model and batch where the bits agree.

With `record` = k, the residual stream after the first k decoder layers is kept for every token fed
(`prefix.recording_states`): the frozen layers' work the RL update would otherwise repeat. A row's last new
token is never fed (nothing needs its logits), so its state is not kept.

The cache's plain layers append into room reserved for the whole decode (`reserve_room`) instead of
`torch.cat`, which copies every layer's keys and values on every step: the same values, a few percent of a
rollout on the AVX2 CPU (LOG.md, fourteenth session). The summaries' cache is rows of the thinking pass's, each
layer copied once into such room (`rows_of`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass

import torch

from budgetlab.prefix import recording_states


@dataclass
class Decoded:
    sequences: torch.Tensor  # [B, W + steps]: the input ids, then each row's new tokens, pad after it is done
    cache: object | None  # with keep_cache: every row's DynamicCache over the first W + steps - 1 positions
    # with record: [B, W + steps, hidden] fp32, column by column as `sequences`, and [B, W + steps] which were fed
    states: torch.Tensor | None = None
    fed: torch.Tensor | None = None


def decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new: int, *, eos_id: int, pad_id: int,
           sampler=None, stop=None, cache=None, keep_cache: bool = False, room: bool = True,
           record: int = 0) -> Decoded:
    """Greedy decoding of `sampler`'s draw (argmax of the logits when None) for every row of `ids` [B, W].

    `mask` [B, W] marks real tokens (left padding, or masked-out columns inside a row). `stop`: a transformers
    `StoppingCriteria` called on the rows still decoding. `cache`: a DynamicCache over the first positions of
    `ids` (the rest are fed as the first step). `keep_cache`: return every row's cache, as `generate` would.
    `room`: append into reserved room (False: transformers' `torch.cat`, the plain path the tests compare with).
    `record`: keep each fed token's state after that many decoder layers (`Decoded.states`); 0 keeps none."""
    from transformers import DynamicCache

    if max_new < 1:
        raise ValueError(f"max_new={max_new!r} must be a positive number of tokens.")
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    n_rows, width = ids.shape
    position = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    past = cache.get_seq_length() if cache is not None else 0
    cache = cache if cache is not None else DynamicCache(config=model.config)
    if room:
        reserve_room(cache, max_new + 1)  # keep_cache feeds a done row once more
    new = torch.full((n_rows, max_new), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(n_rows, device=device)  # batch position -> row of `ids`
    # False: the row is done and fed once more, so that its last token's keys and values enter the cache (keep_cache)
    live = torch.ones(n_rows, dtype=torch.bool, device=device)
    kept: dict[int, list] = {}  # row -> its cache per layer, taken when the row left the batch
    step_ids, step_pos, step_mask = ids[:, past:], position[:, past:], mask
    steps, extra = 0, _forward_kwargs(model, cache)
    states = fed = None
    if record:
        states = torch.zeros((n_rows, width + max_new, model.config.hidden_size), device=device)
        fed = torch.zeros((n_rows, width + max_new), dtype=torch.bool, device=device)
    with torch.inference_mode(), (recording_states(model, record) if record else contextlib.nullcontext([])) as seen:
        while True:
            logits = model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos, use_cache=True,
                           **extra).logits[:, -1].float()
            if seen:  # the columns this forward fed: the prompt's (past on), then each step's newest token
                col = width + steps - step_ids.shape[1]
                states[rows, col:col + step_ids.shape[1]] = seen.pop()
                fed[rows, col:col + step_ids.shape[1]] = True
            now = live.nonzero().squeeze(1)  # batch positions still decoding
            if sampler is None:
                token = logits[now].argmax(-1)
            else:  # one uniform for every row of the batch, as generate draws them, used for the live rows
                uniform = torch.rand((n_rows, 1), device=device)[rows[now]]
                token = sampler.draw(torch.cat([ids[rows[now]], new[rows[now], :steps]], 1), logits[now], uniform)
            new[rows[now], steps] = token
            steps += 1
            done = token == eos_id
            if stop is not None:
                done |= stop(torch.cat([ids[rows[now]], new[rows[now], :steps]], 1), None).to(device)
            if steps == max_new or bool(done.all()):
                break
            stay = live.clone()  # with keep_cache the rows done now stay one step; those done before leave
            live[now[done]] = False
            if not keep_cache:
                stay = live
            if not bool(stay.all()):
                if keep_cache:
                    for i in (~stay).nonzero().squeeze(1).tolist():  # copies: a view would keep the whole batch
                        kept[int(rows[i])] = [(layer.keys[i].clone(), layer.values[i].clone())
                                              for layer in cache.layers]
                index = stay.nonzero().squeeze(1)
                cache.batch_select_indices(index)
                rows, live, step_mask, step_pos = rows[index], live[index], step_mask[index], step_pos[index]
            step_ids = new[rows, steps - 1][:, None]
            step_mask = torch.cat([step_mask, step_mask.new_ones(len(rows), 1)], 1)
            step_pos = step_pos[:, -1:] + 1
    sequences = torch.cat([ids, new[:, :steps]], 1)
    if record:
        states, fed = states[:, :width + steps], fed[:, :width + steps]
    return Decoded(sequences, _all_rows(cache, kept, rows, n_rows, model.config) if keep_cache else None, states, fed)


@functools.lru_cache(maxsize=None)
def _room_layer():
    """The class of `reserve_room`'s layers (built on first use: transformers is imported lazily here)."""
    from transformers.cache_utils import DynamicLayer

    class RoomLayer(DynamicLayer):
        """A `DynamicLayer` whose keys and values are views of buffers with `room` positions to spare: an update
        writes the new positions in place, and only one that does not fit allocates (and copies) again."""

        room, buffers = 0, None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            held, new = self.get_seq_length(), key_states.shape[-2]
            k = self.buffers[0] if self.buffers is not None else None
            in_place = (k is not None and held > 0 and self.keys.data_ptr() == k.data_ptr()
                        and self.keys.stride() == k.stride() and k.shape[:2] == key_states.shape[:2]
                        and held + new <= k.shape[-2])
            if not in_place:  # the first update, or the layer was changed by another method (batch_select_indices)
                rows, heads, _, dim = key_states.shape
                self.buffers = tuple(s.new_empty(rows, heads, held + new + self.room, dim)
                                     for s in (key_states, value_states))
                if held:
                    self.buffers[0][:, :, :held] = self.keys
                    self.buffers[1][:, :, :held] = self.values
            for buffer, states in zip(self.buffers, (key_states, value_states)):
                buffer[:, :, held:held + new] = states
            self.keys, self.values = (b[:, :, :held + new] for b in self.buffers)
            return self.keys, self.values

    return RoomLayer


def _held(keys: torch.Tensor, values: torch.Tensor, held: int, room: int):
    """A `reserve_room` layer over the buffers `keys` and `values` ([rows, heads, held + room, dim]) whose first
    `held` positions are filled: they are used as they are, not copied."""
    layer = _room_layer()()
    layer.lazy_initialization(keys, values)
    layer.buffers, layer.room = (keys, values), room
    layer.keys, layer.values = keys[:, :, :held], values[:, :, :held]
    return layer


def _plain(layers) -> bool:
    """Whether every layer is a plain `DynamicLayer` (or `reserve_room`'s kind of it): no sliding window, no
    quantization. Only those are built over buffers here (`_held`)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) in (DynamicLayer, _room_layer()) for layer in layers)


def rows_of(cache, rows: torch.Tensor, room: int, config):
    """A DynamicCache of `rows` of `cache` (a row may repeat), with `room` positions to spare in every layer.

    It holds what `DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) ...])` holds, and a decode
    from it appends in place (`reserve_room`). That path copies each layer three times (the indexing, its
    `torch.cat` onto an empty tensor, the first append's move into room); here each plain layer is copied once,
    straight into its buffer. Other layer kinds (sliding windows, quantized) take that path."""
    from transformers import DynamicCache

    if not (_plain(cache.layers) and all(layer.get_seq_length() for layer in cache.layers)):
        return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers],
                            config=config)
    out = DynamicCache(config=config)
    out.layers = []
    for layer in cache.layers:
        held = layer.get_seq_length()
        buffers = []
        for held_states in (layer.keys, layer.values):
            _, heads, _, dim = held_states.shape
            buffer = held_states.new_empty((len(rows), heads, held + room, dim))
            torch.index_select(held_states, 0, rows, out=buffer[:, :, :held])
            buffers.append(buffer)
        out.layers.append(_held(*buffers, held, room))
    return out


def reserve_room(cache, room: int) -> None:
    """Every plain `DynamicLayer` of `cache` becomes one that appends into `room` reserved positions (its keys and
    values so far kept). Other layer kinds (sliding windows, quantized) stay as they are."""
    from transformers.cache_utils import DynamicLayer

    cls = _room_layer()
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            roomy = cls.__new__(cls)
            roomy.__dict__.update(layer.__dict__)
            roomy.room = room
            cache.layers[i] = roomy


def _forward_kwargs(model, cache) -> dict:
    """The cache under the name this transformers' forward takes, and `logits_to_keep=1` where the model takes it
    (as `generate` sets it: the prompt's pass computes the output head at its last position only)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    extra = {"cache" if "cache" in params else "past_key_values": cache}
    if "logits_to_keep" in params:
        extra["logits_to_keep"] = 1
    return extra


def _all_rows(cache, kept: dict, rows: torch.Tensor, n_rows: int, config):
    """One DynamicCache for all `n_rows`: the rows still in `cache` and those `kept` when they left, each row's
    positions past its own end zero (a mask must exclude them, as it excludes `generate`'s pad tokens there)."""
    from transformers import DynamicCache

    layers = []
    for j, layer in enumerate(cache.layers):
        keys = layer.keys.new_zeros((n_rows, *layer.keys.shape[1:]))
        values = torch.zeros_like(keys)
        keys[rows], values[rows] = layer.keys, layer.values
        for r, per_layer in kept.items():
            k, v = per_layer[j]
            keys[r, :, :k.shape[1]], values[r, :, :v.shape[1]] = k, v
        layers.append((keys, values))
    out = DynamicCache(config=config)
    if len(out.layers) != len(layers) or not _plain(out.layers):  # sliding windows: their own layers
        return DynamicCache(ddp_cache_data=layers, config=config)
    out.layers = [_held(keys, values, keys.shape[2], 0) for keys, values in layers]  # as they are: no copy
    return out
