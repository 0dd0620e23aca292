"""HF generation backend: sample thinking once up to the largest budget, then forced summaries at every budget.

`HFRollout` (CPU or CUDA) reuses the prompt+thinking KV cache for every budget: each distinct cut
becomes a row whose thinking past the cut is masked out, the inserted markers are appended, and the
summaries of all budgets decode in one batched call (SPEC §6, §8). Prompts and thinking are token ids
and text is decoded only for grading and reading; the results are traces.py's `Trace` and `Summary`.
With `record_depth` = k (the RL loop), each trace and summary also keeps its tokens' states after the first
k decoder layers, for the update to start from (`prefix.recording_states`).
vllm_rollout.py offers the same interface on vLLM.
"""

from __future__ import annotations

from typing import Sequence

import torch

from budgetlab.decode import Decoded, decode, rows_of
from budgetlab.sampling import InverseCDFSampling
from budgetlab.traces import Summary, Trace, fill_text, find_thinking_end, until_eos
from budgetlab.truncation import THINK_END, Markers, build_summary_prompt, cut_point


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into (input_ids[B, L], attention_mask[B, L])."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def kept_states(out: Decoded, row: int, start: int, stop: int, last: bool = False) -> torch.Tensor | None:
    """Row `row`'s recorded states of columns [start, stop), on the CPU; None unless every one was fed. With `last`,
    the final column need not have been: a sequence's last token is read by no trained prediction (its state
    stays 0)."""
    if out.states is None or not bool(out.fed[row, start:stop - int(last)].all()):
        return None
    return out.states[row, start:stop].cpu()


class HFRollout:
    """Batched sampling with a transformers causal LM; one thinking pass serves every budget."""

    def __init__(self, model, tokenizer, *, temperature: float = 1.0, top_p: float = 1.0,
                 batch_size: int = 64, reuse_cache: bool = True, max_rows: int = 256, summary_bf16: bool = False,
                 prune_finished: bool = True, record_depth: int = 0):
        self.model, self.tok = model, tokenizer
        # keep every token's state after this many decoder layers (decode.decode only; 0: none)
        self.record_depth = record_depth if prune_finished else 0
        # bf16 autocast for the summary decode only: its batch (every budget's rows) is wide enough for bf16
        # matmuls to pay for casting the weights on each step (measured ~25% off the summaries on AVX512-BF16);
        # the thinking pass, 16-64 rows wide, stays in the model's dtype.
        self.summary_bf16 = summary_bf16
        self.markers = Markers.from_tokenizer(tokenizer)
        self.temperature, self.top_p = temperature, top_p
        self.batch_size, self.reuse_cache = batch_size, reuse_cache
        self.prune_finished = prune_finished  # decode.decode, finished rows leaving the batch; False: generate
        self.max_rows = max_rows  # summary rows decoded together (memory: each row holds a copy of its KV cache)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self._stops: dict[str, object] = {}  # stop string -> StopStringCriteria (building one scans the vocabulary)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _summary_precision(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.summary_bf16)

    def _generate(self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, do_sample: bool,
                  stop: str | None = None, cache=None, keep_cache: bool = False, record: bool = False) -> Decoded:
        """Greedy decoding of `InverseCDFSampling`'s draw when do_sample, else of the logits, by `decode.decode`
        (finished rows leave the batch) or, with `prune_finished=False`, by `generate` (no states recorded)."""
        from transformers import LogitsProcessorList, StopStringCriteria, StoppingCriteriaList

        sampler = InverseCDFSampling(self.temperature, self.top_p) if do_sample else None
        if stop and stop not in self._stops:
            self._stops[stop] = StopStringCriteria(self.tok, [stop])
        criteria = self._stops[stop] if stop else None
        if self.prune_finished:
            return decode(self.model, ids, mask, max_new, eos_id=self.eos_id, pad_id=self.pad_id, sampler=sampler,
                          stop=criteria, cache=cache, keep_cache=keep_cache,
                          record=self.record_depth if record else 0)
        kwargs = dict(max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None, top_k=None,
                      pad_token_id=self.pad_id, eos_token_id=self.eos_id, return_dict_in_generate=True)
        if sampler is not None:
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        if criteria is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([criteria])
        if cache is not None:
            kwargs["past_key_values"] = cache
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        return Decoded(out.sequences, out.past_key_values if keep_cache else None)

    def sample_prefix(self, prompts: Sequence[Sequence[int]], max_new: int, stop: str,
                      do_sample: bool = True) -> list[list[int]]:
        """Sample a short prefix per prompt (a SelfBudgeter budget tag), stopping at `stop` or EOS."""
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            ids, mask = left_pad(chunk, self.pad_id)
            gen = self._generate(ids, mask, max_new, do_sample, stop=stop).sequences[:, ids.shape[1]:]
            out += [until_eos(row.tolist(), self.eos_id, keep_eos=False) for row in gen]
        return out

    def rollout(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], *, n_summaries: int = 1,
                max_summary: int = 32, do_sample: bool = True,
                trained_prefix: Sequence[tuple[int, int]] | None = None) -> list[Trace]:
        """Sample thinking up to budgets[-1] for each prompt, then `n_summaries` summaries at every budget."""
        traces: list[Trace] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [list(p) for p in prompts[start:start + self.batch_size]]
            spans = trained_prefix[start:start + len(chunk)] if trained_prefix else [(0, 0)] * len(chunk)
            traces += self._rollout_batch(chunk, list(budgets), n_summaries, max_summary, do_sample, spans)
        return traces

    def _rollout_batch(self, prompts, budgets, n_summaries, max_summary, do_sample, spans) -> list[Trace]:
        b_max = budgets[-1]
        ids, mask = left_pad(prompts, self.pad_id)
        width = ids.shape[1]
        out = self._generate(ids, mask, b_max + len(self.markers.end_ids), do_sample, stop=THINK_END,
                             keep_cache=self.reuse_cache, record=self.reuse_cache)
        seq, cache = out.sequences, out.cache
        traces = []
        for i, row in enumerate(seq[:, width:].tolist()):
            thinking, closed = find_thinking_end(until_eos(row, self.eos_id, keep_eos=False), self.markers, self.tok)
            if len(thinking) > b_max:
                thinking, closed = thinking[:b_max], False
            traces.append(Trace(prompts[i], thinking, closed, tuple(spans[i]),
                                [[None] * n_summaries for _ in budgets],
                                states=kept_states(out, i, width - len(prompts[i]), width + len(thinking))))
        if self.reuse_cache:
            self._summaries_from_cache(traces, budgets, seq, cache, mask, n_summaries, max_summary, do_sample)
        else:
            self._summaries_from_scratch(traces, budgets, n_summaries, max_summary, do_sample)
        fill_text(traces, self.tok, self.markers)
        return traces

    def _summaries_from_cache(self, traces, budgets, seq, cache, prompt_mask, n_summaries, max_summary, do_sample):
        """Every budget's summaries in one batched call that reuses the thinking pass's KV cache.

        Each distinct cut (trace, kept, truncated) becomes a row: the cache rows are copied, the thinking past
        the cut is masked out (the same column for every row, since prompts are left-padded), the markers
        are appended, and all rows decode together: S budgets cost one short decode, not S (SPEC §8).
        """
        width = prompt_mask.shape[1]
        n_gen = seq.shape[1] - width
        jobs = []  # (trace index, cut) for every distinct cut; shared cuts share one summary (SPEC §6)
        for i, t in enumerate(traces):
            for b in budgets:
                cut = cut_point(t.n_thinking, t.closed, b)
                if (i, cut) not in jobs:
                    jobs.append((i, cut))
        done: dict[tuple, list[Summary]] = {}
        per_call = max(1, self.max_rows // n_summaries)
        for start in range(0, len(jobs), per_call):
            part = jobs[start:start + per_call]
            rows = [i for i, _ in part for _ in range(n_summaries)]
            idx = torch.tensor(rows, device=seq.device)
            think_mask = torch.zeros((len(rows), n_gen), dtype=torch.long)
            chunks = []
            for r, (i, (kept, trunc)) in enumerate((job for job in part for _ in range(n_summaries))):
                think_mask[r, :kept] = 1
                chunks.append((self.markers.cut_ids if trunc else self.markers.end_ids) + self.markers.cue_ids)
            chunk_ids, chunk_mask = left_pad(chunks, self.pad_id)
            ids = torch.cat([seq[idx].cpu(), chunk_ids], dim=1)
            mask = torch.cat([prompt_mask[idx.cpu()], think_mask, chunk_mask], dim=1)
            # the rows' cache, each copied once into room for the markers, the cue and the summary (decode.rows_of)
            rows_cache = rows_of(cache, idx, chunk_ids.shape[1] + max_summary + 1, self.model.config)
            with self._summary_precision():
                out = self._generate(ids, mask, max_summary, do_sample, cache=rows_cache, record=True)
            gen = out.sequences[:, ids.shape[1]:]
            for k, (i, cut) in enumerate(part):
                done[(i, cut)] = []
                for r in range(k * n_summaries, (k + 1) * n_summaries):
                    own = until_eos(gen[r].tolist(), self.eos_id, True)
                    # the states of its inserted markers and cue (chunks[r], left-padded), then of its own tokens
                    states = kept_states(out, r, ids.shape[1] - len(chunks[r]), ids.shape[1] + len(own), last=True)
                    done[(i, cut)].append(Summary(cut[0], cut[1], own, states=states))
        for i, t in enumerate(traces):
            t.summaries = [done[(i, cut_point(t.n_thinking, t.closed, b))] for b in budgets]

    def _summaries_from_scratch(self, traces, budgets, n_summaries, max_summary, do_sample):
        """The peer of the cached path: rebuild and re-run every summary prompt from the start."""
        done: list[dict] = [dict() for _ in traces]
        for j, b in enumerate(budgets):
            cuts = [cut_point(t.n_thinking, t.closed, b) for t in traces]
            todo = [i for i in range(len(traces)) if cuts[i] not in done[i]]
            if todo:
                rows = [build_summary_prompt(traces[i].prompt_ids, traces[i].thinking_ids, traces[i].closed, b,
                                             self.markers)[0] for i in todo]
                ids, mask = left_pad(rows, self.pad_id)
                with self._summary_precision():
                    results = [self._generate(ids, mask, max_summary, do_sample).sequences[:, ids.shape[1]:].tolist()
                               for _ in range(n_summaries)]
                for k, i in enumerate(todo):
                    done[i][cuts[i]] = [Summary(cuts[i][0], cuts[i][1], until_eos(r[k], self.eos_id, True))
                                        for r in results]
            for i, t in enumerate(traces):
                t.summaries[j] = done[i][cuts[i]]
