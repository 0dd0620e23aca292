"""`decode` takes generate's steps with finished rows out of the batch: same tokens, same draws, same cache.

The tiny random Llama rarely ends a row by itself, so the tests end each row after a length set by its prompt:
rows then finish at different steps and leave the batch while the others go on (checked, not assumed). Its
weights are redrawn wider than the initialisation's so that greedy decoding differs from row to row.
"""

import pytest
import torch
from transformers import DynamicCache, StoppingCriteria, StopStringCriteria

from budgetlab.decode import decode, rows_of
from budgetlab.models import load_model
from budgetlab.prompts import encode_prompt
from budgetlab.rollout import HFRollout, left_pad
from budgetlab.sampling import InverseCDFSampling

QUESTIONS = ["Compute 1 + 2", "Compute 17 - 5 + 3 - 8", "Compute 4 + 4 + 4", "Compute 9", "Compute 2 + 2 + 2 + 2"]
MAX_NEW = 12


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model("tiny", adapter="none")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    ids, mask = left_pad([encode_prompt(tok, q) for q in QUESTIONS], tok.pad_token_id)
    return model.eval(), tok, ids, mask


def generate(model, ids, mask, eos_id, pad_id, sampler=None, stop=None):
    kwargs = dict(logits_processor=[sampler]) if sampler else {}
    if stop is not None:
        kwargs["stopping_criteria"] = [stop]
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False,
                              temperature=None, top_p=None, top_k=None, pad_token_id=pad_id, eos_token_id=eos_id,
                              return_dict_in_generate=True, **kwargs)


class EndsByPromptLength(StoppingCriteria):
    """Ends each row after 3 + (its prompt's length mod 5) new tokens: rows finish at different steps."""

    def __init__(self, width: int, pad_id: int):
        self.width, self.pad_id = width, pad_id

    def ends(self, prompts: torch.Tensor) -> torch.Tensor:
        return 3 + (prompts != self.pad_id).sum(1) % 5

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids.shape[1] - self.width >= self.ends(input_ids[:, :self.width])


@pytest.mark.parametrize("sampled", [False, True])
def test_decode_gives_generates_tokens_while_finished_rows_leave_the_batch(tiny, sampled):
    model, tok, ids, mask = tiny
    pad, eos = tok.pad_token_id, tok.eos_token_id
    stop = EndsByPromptLength(ids.shape[1], pad)
    ends = stop.ends(ids).tolist()
    assert len(set(ends)) >= 3  # rows leave the batch at three different steps or more
    torch.manual_seed(0)
    ref = generate(model, ids, mask, eos, pad, InverseCDFSampling() if sampled else None, stop=stop).sequences
    next_draw = torch.rand(1)
    torch.manual_seed(0)
    out = decode(model, ids, mask, MAX_NEW, eos_id=eos, pad_id=pad, sampler=InverseCDFSampling() if sampled else None,
                 stop=stop)
    assert out.sequences.tolist() == ref.tolist()
    assert torch.rand(1) == next_draw  # as many uniforms drawn as generate draws
    new = out.sequences[:, ids.shape[1]:]
    assert new.shape[1] == max(ends) and all((row[n:] == pad).all() and (row[:n] != pad).all()
                                             for row, n in zip(new, ends))


def test_an_eos_ends_its_row_as_in_generate(tiny):
    # row 0's fourth greedy token is made the EOS: row 0 leaves after 4 tokens, the others run to the end
    model, tok, ids, mask = tiny
    pad = tok.pad_token_id
    eos = int(generate(model, ids, mask, None, pad).sequences[0, ids.shape[1] + 3])
    ref = generate(model, ids, mask, eos, pad).sequences
    out = decode(model, ids, mask, MAX_NEW, eos_id=eos, pad_id=pad, keep_cache=True)
    assert out.sequences.tolist() == ref.tolist()
    new = out.sequences[:, ids.shape[1]:]
    assert new[0, 3] == eos and (new[0, 4:] == pad).all() and (new[1:, -1] != pad).any()


def test_a_stop_string_ends_a_row_as_in_generate(tiny):
    model, tok, ids, mask = tiny
    pad = tok.pad_token_id
    new = generate(model, ids, mask, None, pad).sequences[0, ids.shape[1]:]
    stop = StopStringCriteria(tok, [tok.decode(new[3:5])])  # the text of row 0's 4th and 5th tokens
    ref = generate(model, ids, mask, tok.eos_token_id, pad, stop=stop).sequences
    out = decode(model, ids, mask, MAX_NEW, eos_id=tok.eos_token_id, pad_id=pad, stop=stop)
    assert out.sequences.tolist() == ref.tolist()
    assert (out.sequences[0, ids.shape[1] + 5:] == pad).all()


def test_the_kept_cache_holds_every_rows_states_up_to_its_own_end(tiny):
    model, tok, ids, mask = tiny
    pad, eos = tok.pad_token_id, tok.eos_token_id
    stop = EndsByPromptLength(ids.shape[1], pad)
    ref = generate(model, ids, mask, eos, pad, stop=stop)
    out = decode(model, ids, mask, MAX_NEW, eos_id=eos, pad_id=pad, stop=stop, keep_cache=True)
    width = ids.shape[1]
    assert out.cache.get_seq_length() == ref.past_key_values.get_seq_length() == out.sequences.shape[1] - 1
    steps = out.sequences.shape[1] - width
    for mine, theirs in zip(out.cache.layers, ref.past_key_values.layers):
        for r, n in enumerate(stop.ends(ids).tolist()):
            held = width + min(n, steps - 1)  # the prompt and every token of the row (but one the loop ended on)
            torch.testing.assert_close(mine.keys[r, :, :held], theirs.keys[r, :, :held])
            torch.testing.assert_close(mine.values[r, :, :held], theirs.values[r, :, :held])
            assert not mine.keys[r, :, held:].any()


def test_rollouts_with_and_without_pruning_are_the_same(tiny):
    # thinking rows close at different steps (the marker is made the end of their thinking), so the summaries decode
    # from the kept cache of rows that left the thinking pass early
    model, tok, ids, mask = tiny
    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    runs = []
    for prune in (True, False):
        torch.manual_seed(1)
        rollout = HFRollout(model, tok, prune_finished=prune)
        rollout._stops["</think>"] = EndsByPromptLength(ids.shape[1], tok.pad_token_id)
        traces = rollout.rollout(prompts, [2, 4, 9], max_summary=5, do_sample=True)
        runs.append([(t.thinking_ids, [[s.ids for s in b] for b in t.summaries]) for t in traces])
    assert runs[0] == runs[1]
    assert len({len(t[0]) for t in runs[0]}) >= 3


@pytest.mark.parametrize("keep_cache", [False, True])
def test_reserved_room_gives_the_tokens_and_cache_of_torch_cat(tiny, keep_cache):
    # sampled, rows leaving the batch at three or more steps (batch_select_indices, then an update that reallocates),
    # and a passed-in cache over the prompt's first half, as the summaries' decode gets one
    model, tok, ids, mask = tiny
    pad, eos = tok.pad_token_id, tok.eos_token_id
    stop = EndsByPromptLength(ids.shape[1], pad)
    half = ids.shape[1] // 2
    runs, caches = [], []
    for room in (False, True):
        with torch.inference_mode():
            prefix = model(input_ids=ids[:, :half], attention_mask=mask[:, :half],
                           position_ids=(mask[:, :half].cumsum(-1) - 1).clamp(min=0), use_cache=True).past_key_values
        torch.manual_seed(0)
        out = decode(model, ids, mask, MAX_NEW, eos_id=eos, pad_id=pad, sampler=InverseCDFSampling(), stop=stop,
                     cache=prefix, keep_cache=keep_cache, room=room)
        runs.append(out.sequences)
        caches.append(out.cache)
        assert {type(layer).__name__ for layer in prefix.layers} == {"RoomLayer" if room else "DynamicLayer"}
    assert torch.equal(runs[0], runs[1])
    if keep_cache:
        for plain, roomy in zip(caches[0].layers, caches[1].layers):
            assert torch.equal(plain.keys, roomy.keys) and torch.equal(plain.values, roomy.values)


def test_a_caches_rows_hold_what_indexing_gives_with_room_the_decode_appends_into(tiny):
    # the summaries' cache: rows of a cache over the prompt's first half, some repeated, against the cache
    # transformers builds from the indexed rows; the decode from it must then write into the same buffers
    model, tok, ids, mask = tiny
    pad, eos = tok.pad_token_id, tok.eos_token_id
    half = ids.shape[1] // 2
    with torch.inference_mode():
        prefix = model(input_ids=ids[:, :half], attention_mask=mask[:, :half],
                       position_ids=(mask[:, :half].cumsum(-1) - 1).clamp(min=0), use_cache=True).past_key_values
    rows = torch.tensor([3, 0, 0, 4, 1, 3])
    room = ids.shape[1] - half + MAX_NEW + 1
    mine = rows_of(prefix, rows, room, model.config)
    theirs = DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in prefix.layers],
                          config=model.config)
    assert len(mine.layers) == len(theirs.layers)
    for a, b in zip(mine.layers, theirs.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        assert a.buffers[0].shape[2] == a.buffers[1].shape[2] == half + room
    buffers = [layer.buffers[0].data_ptr() for layer in mine.layers]
    runs = []
    for cache in (mine, theirs):
        torch.manual_seed(0)
        runs.append(decode(model, ids[rows], mask[rows], MAX_NEW, eos_id=eos, pad_id=pad, sampler=InverseCDFSampling(),
                           cache=cache).sequences)
    assert torch.equal(runs[0], runs[1])
    assert not (runs[0][:, ids.shape[1]:] == eos).any()  # no row ended, so none left the batch
    assert [layer.keys.data_ptr() for layer in mine.layers] == buffers  # appended in place, never copied again


def test_a_bad_length_fails_in_one_sentence(tiny):
    model, tok, ids, mask = tiny
    with pytest.raises(ValueError, match="max_new=0"):
        decode(model, ids, mask, 0, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
