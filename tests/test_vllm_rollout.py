"""The vLLM backend's bookkeeping, run against a stand-in engine that answers as vLLM documents.

vLLM cannot be installed on these machines, so `LLM`, `SamplingParams`, `TokensPrompt` and `LoRARequest`
are replaced by small classes with vLLM's documented fields (`RequestOutput.outputs[i].token_ids`,
`finish_reason`, `stop_reason`). What is checked is ours: where thinking ends, one summary request per
distinct cut, the prompts those requests carry, shared summaries, EOS handling and LoRA request naming.
The engine itself (sampling, prefix caching, LoRA serving) is not exercised here.
"""

import sys
import types
from types import SimpleNamespace

import pytest

from budgetlab.model_files import load_tokenizer
from budgetlab.truncation import THINK_END, Markers, build_summary_prompt


class FakeLLM:
    """Answers thinking requests from `thinking[prompt id]` and every summary request with `summary`."""

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append(SimpleNamespace(prompts=[p["prompt_token_ids"] for p in prompts], params=params,
                                          lora=lora_request))
        if params.stop == [THINK_END]:
            return [SimpleNamespace(outputs=[self.thinking[p["prompt_token_ids"][-1]]]) for p in prompts]
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(self.summary), finish_reason="stop",
                                                         stop_reason=None) for _ in range(params.n)])
                for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # a TypedDict in vLLM
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, int_id, path: SimpleNamespace(name=name, int_id=int_id, path=path)
    for name, mod in {"vllm": vllm, "vllm.inputs": inputs, "vllm.lora": lora, "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return vllm


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def out(ids, finish="stop", stop=None):
    return SimpleNamespace(token_ids=list(ids), finish_reason=finish, stop_reason=stop)


def test_vllm_rollout_ends_thinking_as_the_hf_backend_does_and_asks_one_summary_per_distinct_cut(fake_vllm, tok):
    from budgetlab.vllm_rollout import VLLMRollout

    m = Markers.from_tokenizer(tok)
    eos = tok.eos_token_id
    ro = VLLMRollout("some/model", tok, lora_path="/adapters/step1")
    ro.llm.thinking = {
        100: out([5, 6, 7] + m.end_ids, stop=THINK_END),  # vLLM kept the stop string's tokens
        101: out(list(range(20, 32)), finish="length"),  # 12 tokens: longer than b_max = 8, never closed
        102: out([5, 6], stop=THINK_END),  # vLLM dropped the stop string's tokens
        103: out([9, eos, 9, 9]),  # the model ended with EOS inside its thinking
    }
    ro.llm.summary = tok.encode("\\boxed{3}", add_special_tokens=False) + [eos, 7]  # tokens after EOS are dropped
    prompts = [[1, 100], [1, 101], [1, 102], [1, 103]]
    traces = ro.rollout(prompts, [4, 8], n_summaries=2, max_summary=6)

    assert [(t.thinking_ids, t.closed) for t in traces] == [([5, 6, 7], True), (list(range(20, 28)), False),
                                                           ([5, 6], True), ([9], False)]
    think_call, summary_call = ro.llm.calls
    assert think_call.params.max_tokens == 8 + len(m.end_ids) and think_call.params.n == 1
    # closed traces share one summary for both budgets; the long one is cut at 4 and at 8; EOS-ended is cut at 1
    expected = [build_summary_prompt(p, t.thinking_ids, t.closed, b, m)[0]
                for p, t, bs in zip(prompts, traces, [[4], [4, 8], [4], [4]]) for b in bs]
    assert summary_call.prompts == expected
    assert summary_call.params.n == 2 and summary_call.params.max_tokens == 6 and summary_call.params.stop is None
    assert traces[0].summaries[0] is traces[0].summaries[1] and traces[1].summaries[0] is not traces[1].summaries[1]
    s = traces[1].summaries[0][1]
    assert (s.kept, s.truncated, s.ids) == (4, True, ro.llm.summary[:-1])
    assert "\\boxed{3}" in s.text and THINK_END in traces[0].summaries[0][0].text
    assert think_call.lora.name == "adapter-0" and think_call.lora.path == "/adapters/step1"


def test_each_new_adapter_is_served_as_a_new_lora_request_and_none_without_one(fake_vllm, tok):
    from budgetlab.vllm_rollout import VLLMRollout

    ro = VLLMRollout("some/model", tok, lora_path="/a/0")
    first = ro._lora()
    ro.set_adapter("/a/1")
    second = ro._lora()
    assert (first.name, first.int_id) == ("adapter-0", 1) and (second.name, second.int_id, second.path) == (
        "adapter-1", 2, "/a/1")
    assert ro.llm.kwargs["enable_lora"] and ro.llm.kwargs["enable_prefix_caching"]
    assert VLLMRollout("some/model", tok)._lora() is None


def test_without_vllm_the_backend_says_which_extra_to_install(monkeypatch, tok):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError, installed or not
    from budgetlab.vllm_rollout import VLLMRollout

    with pytest.raises(ImportError, match=r"pip install -e '\.\[gpu\]'"):
        VLLMRollout("some/model", tok)
