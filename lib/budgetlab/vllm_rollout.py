"""Generation on vLLM (optional `gpu` extra): rollout.py's `HFRollout` interface, through vLLM.

`VLLMRollout` samples the thinking, then sends one summary request per distinct (trace, cut), so that
vLLM's prefix caching shares the prompt+thinking blocks between budgets; each newly saved adapter is
served as a fresh LoRA request (no weight merging). It returns traces.py's `Trace` and `Summary`, and
was not executed here (see the class docstring and README).
"""

from __future__ import annotations

from budgetlab.traces import Summary, Trace, fill_text, find_thinking_end, until_eos
from budgetlab.truncation import THINK_END, Markers, build_summary_prompt, cut_point


class VLLMRollout:
    """The same interface on vLLM (optional `gpu` extra): LoRA requests, prefix caching.

    Written against vLLM's documented API (`LLM`, `SamplingParams`, `LoRARequest`, token prompts);
    vLLM cannot be installed on the machines this was built on, so this path was not executed here.
    """

    def __init__(self, model_path: str, tokenizer, *, lora_path: str | None = None, temperature: float = 1.0,
                 top_p: float = 1.0, gpu_memory_utilization: float = 0.85, max_model_len: int = 4096):
        try:
            from vllm import LLM  # imported lazily: only the gpu extra has it
        except ImportError as e:
            raise ImportError("VLLMRollout needs vLLM, which is not installed here; on a CUDA machine run "
                              "`pip install -e '.[gpu]'`, or use budgetlab.rollout.HFRollout.") from e

        self.tok = tokenizer
        self.markers = Markers.from_tokenizer(tokenizer)
        self.temperature, self.top_p = temperature, top_p
        self.llm = LLM(model=model_path, enable_prefix_caching=True, enable_lora=lora_path is not None,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.lora_path = lora_path
        self._lora_version = 0

    def set_adapter(self, lora_path: str) -> None:
        """Serve a newly saved adapter as a fresh LoRA request (no weight merging, SPEC §12)."""
        self.lora_path, self._lora_version = lora_path, self._lora_version + 1

    def _lora(self):
        if self.lora_path is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"adapter-{self._lora_version}", self._lora_version + 1, self.lora_path)

    def _params(self, max_tokens: int, n: int, do_sample: bool, stop: list[str] | None = None):
        from vllm import SamplingParams

        return SamplingParams(n=n, max_tokens=max_tokens, temperature=self.temperature if do_sample else 0.0,
                              top_p=self.top_p if do_sample else 1.0, stop=stop or None)

    def _run(self, prompt_rows, params):
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r)) for r in prompt_rows]
        return self.llm.generate(prompts, params, lora_request=self._lora(), use_tqdm=False)

    def sample_prefix(self, prompts, max_new: int, stop: str, do_sample: bool = True) -> list[list[int]]:
        outs = self._run(prompts, self._params(max_new, 1, do_sample, [stop]))
        return [until_eos(o.outputs[0].token_ids, self.tok.eos_token_id, keep_eos=False) for o in outs]

    def rollout(self, prompts, budgets, *, n_summaries: int = 1, max_summary: int = 32, do_sample: bool = True,
                trained_prefix=None) -> list[Trace]:
        b_max = budgets[-1]
        outs = self._run(prompts, self._params(b_max + len(self.markers.end_ids), 1, do_sample, [THINK_END]))
        traces = []
        for i, o in enumerate(outs):
            c = o.outputs[0]
            # The same bookkeeping as HFRollout: drop EOS, split at </think> whether or not vLLM kept its tokens.
            thinking, found = find_thinking_end(until_eos(c.token_ids, self.tok.eos_token_id, keep_eos=False),
                                                self.markers, self.tok)
            closed = found or (c.finish_reason == "stop" and c.stop_reason == THINK_END)
            if len(thinking) > b_max:
                thinking, closed = thinking[:b_max], False
            span = tuple(trained_prefix[i]) if trained_prefix else (0, 0)
            traces.append(Trace(list(prompts[i]), thinking, closed, span, [[None] * n_summaries for _ in budgets]))
        # One request per distinct (trace, cut); prefix caching shares the prompt+thinking blocks.
        keys, rows = [], []
        for ti, t in enumerate(traces):
            for b in budgets:
                key = (ti, cut_point(t.n_thinking, t.closed, b))
                if key not in keys:
                    keys.append(key)
                    rows.append(build_summary_prompt(t.prompt_ids, t.thinking_ids, t.closed, b, self.markers)[0])
        outs = self._run(rows, self._params(max_summary, n_summaries, do_sample))
        eos = self.tok.eos_token_id
        done = {k: [Summary(k[1][0], k[1][1], until_eos(c.token_ids, eos, keep_eos=True)) for c in o.outputs]
                for k, o in zip(keys, outs)}
        for ti, t in enumerate(traces):
            for j, b in enumerate(budgets):
                t.summaries[j] = done[(ti, cut_point(t.n_thinking, t.closed, b))]
        fill_text(traces, self.tok, self.markers)
        return traces
