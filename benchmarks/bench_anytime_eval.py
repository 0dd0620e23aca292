"""Cost of an anytime curve: one thinking pass + summaries at S budgets, against one plain generation pass.

    python benchmarks/bench_anytime_eval.py [--model default] [--problems 16] [--budgets 8] [--max-thinking 64]

The peer is a single `generate` call that writes thinking and answer in one go, up to b_max + summary cap
new tokens: the cost of one full-length answer per problem. Ours samples the same thinking once, then
forces a summary at every budget of an S-point grid (KV cache reused, all budgets in one batched call,
summaries decoded in the precision `--precision` resolves to, as the evaluation does: `auto` measures this
machine, budgetlab.precision). Also timed: the same curve with the other precision's summaries
(`ratio_other_precision`), and rebuilding every summary prompt from scratch. Every pass decodes with the model
the evaluation decodes with (`inference.evaluation_decoder`: in bf16 the bf16 generation copy RL samples from; in
fp32 a merged copy on oneDNN's packed weights where this CPU runs that faster, else the model itself; `decoder` in
the JSON). Runs alternate; medians are
reported; the last line is JSON with `ratio` = ours / plain, the CPU capability and the precision record.
The ceiling, measured in the same run: a bare batched decode loop of the same model (bench_ceiling.py) writing
the plain pass's tokens at the same batch; `plain_over_ceiling` and `ours_over_ceiling` are its seconds over
theirs (1.0: as fast as this machine decodes that many tokens at that batch). The same loop also writes the
curve's own tokens at the curve's batches (the thinking at the problems' rows, then every budget's summary
together): `ours_over_curve_ceiling` is its seconds over ours, and `ratio_at_ceiling` the curve's ceiling over
the plain pass's, the ratio this machine's decoding allows for this grid, whatever the code around it.
"""

from __future__ import annotations

import argparse
import json
import os
from budgetlab.config import set_openmp_wait  # noqa: E402
set_openmp_wait()  # before torch loads: a short spin (LOG.md, "OpenMP waiting policy")
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from budgetlab.budgets import budget_grid  # noqa: E402
from budgetlab.inference import evaluation_decoder, is_packed  # noqa: E402
from budgetlab.models import load_model  # noqa: E402
from budgetlab.precision import PRECISIONS, describe, resolve  # noqa: E402
from budgetlab.prompts import encode_prompt  # noqa: E402
from budgetlab.rollout import HFRollout, left_pad  # noqa: E402
from budgetlab.synthetic import make_synthetic  # noqa: E402
from bench_ceiling import bare_decode_tokens_per_s  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def plain_pass(model, tok, prompts, max_new: int) -> float:
    ids, mask = left_pad(prompts, tok.pad_token_id)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, min_new_tokens=max_new,
                       do_sample=True, top_k=0, pad_token_id=tok.pad_token_id)
    return time.perf_counter() - t0


def curve(model, tok, prompts, budgets, max_summary: int, reuse: bool, bf16: bool) -> float:
    roll = HFRollout(model, tok, reuse_cache=reuse, summary_bf16=bf16)
    t0 = time.perf_counter()
    roll.rollout(prompts, budgets, max_summary=max_summary)
    return time.perf_counter() - t0


def curve_ceiling_s(model, tok, ids, mask, budgets, max_thinking: int, max_summary: int) -> float:
    """Seconds a bare decode loop (bench_ceiling) takes to write the curve's own tokens at the curve's batches:
    the thinking, every row together, then every budget's summary, all budgets' rows together, each row from
    its prompt and thinking cut at that budget (decode steps only, as for the plain pass's ceiling); `ids`, `mask`:
    the prompts, left-padded."""
    n = ids.shape[0]
    thinking_s = n * max_thinking / bare_decode_tokens_per_s(model, ids, mask, max_thinking)
    with torch.inference_mode():
        full = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_thinking,
                              min_new_tokens=max_thinking, do_sample=False, pad_token_id=tok.pad_token_id)
    width, cut_ids, cut_mask = ids.shape[1] + max(budgets), [], []
    for b in budgets:  # rows cut at b, left-padded to the longest cut
        pad = width - ids.shape[1] - b
        cut_ids.append(torch.cat([full.new_full((n, pad), tok.pad_token_id), full[:, :ids.shape[1] + b]], 1))
        cut_mask.append(torch.cat([mask.new_zeros(n, pad), mask, mask.new_ones(n, b)], 1))
    rows = n * len(budgets)
    summary_s = rows * max_summary / bare_decode_tokens_per_s(model, torch.cat(cut_ids), torch.cat(cut_mask),
                                                               max_summary)
    return thinking_s + summary_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--budgets", type=int, default=8, help="points in the budget grid")
    ap.add_argument("--max-thinking", type=int, default=64)
    ap.add_argument("--max-summary", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    model.eval()
    choice = resolve(args.precision, model)
    bf16 = choice["precision"] == "bf16"
    print(f"precision {describe(choice)}", flush=True)
    # as evaluate_model decodes: bf16's generation copy, fp32's packed copy where it pays; the other's likewise
    decoder, other = evaluation_decoder(model, bf16), evaluation_decoder(model, not bf16)
    packed = is_packed(decoder)
    kind = ("the model itself" if decoder is model else
            f"a merged {next(decoder.parameters()).dtype} copy" + (" on packed oneDNN weights" if packed else ""))
    print(f"decoding with {kind}", flush=True)
    rows = make_synthetic(args.problems, seed=1)
    prompts = [encode_prompt(tok, r["question"]) for r in rows]
    budgets = budget_grid(args.max_thinking, args.budgets)
    # The untrained model rarely closes its thinking, so every pass runs to b_max: a like-for-like token count.
    torch.manual_seed(0)
    curve(decoder, tok, prompts[:2], budgets, args.max_summary, True, bf16)  # warm-up
    times = {"plain": [], "ours": [], "ours_other": [], "scratch": []}
    for r in range(args.rounds):
        torch.manual_seed(r)
        times["plain"].append(plain_pass(decoder, tok, prompts, args.max_thinking + args.max_summary))
        times["ours"].append(curve(decoder, tok, prompts, budgets, args.max_summary, True, bf16))
        times["ours_other"].append(curve(other, tok, prompts, budgets, args.max_summary, True, not bf16))
        times["scratch"].append(curve(decoder, tok, prompts, budgets, args.max_summary, False, bf16))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ids, mask = left_pad(prompts, tok.pad_token_id)
    new = args.max_thinking + args.max_summary  # the plain pass's conditions: the same decoder and batch
    ceiling_s = len(prompts) * new / bare_decode_tokens_per_s(decoder, ids, mask, new)
    print(f"ceiling: a bare decode loop writes the plain pass's tokens in {ceiling_s:.2f}s", flush=True)
    curve_s = curve_ceiling_s(decoder, tok, ids, mask, budgets, args.max_thinking, args.max_summary)
    print(f"ceiling: a bare decode loop writes the curve's tokens in {curve_s:.2f}s, {curve_s / ceiling_s:.2f}x "
          "the plain pass's", flush=True)
    print(json.dumps({"plain_s": round(med["plain"], 3), "ours_s": round(med["ours"], 3),
                      "scratch_s": round(med["scratch"], 3), "ratio": round(med["ours"] / med["plain"], 3),
                      "ratio_other_precision": round(med["ours_other"] / med["plain"], 3),
                      "other_precision": "fp32" if bf16 else "bf16",
                      "ratio_scratch": round(med["scratch"] / med["plain"], 3), "ceiling_s": round(ceiling_s, 3),
                      "plain_over_ceiling": round(ceiling_s / med["plain"], 3),
                      "ours_over_ceiling": round(ceiling_s / med["ours"], 3),
                      "curve_ceiling_s": round(curve_s, 3), "ours_over_curve_ceiling": round(curve_s / med["ours"], 3),
                      "ratio_at_ceiling": round(curve_s / ceiling_s, 3), "budgets": budgets,
                      "problems": args.problems, "max_summary": args.max_summary, "model": args.model,
                      "threads": args.threads, "decoder": kind,
                      "cpu_capability": choice["cpu_capability"], "cpu_kind": choice["cpu_kind"],
                      "precision": choice}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
