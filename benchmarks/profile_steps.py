"""Where the time goes: torch profiler tables of four warm-start SFT steps and one GRPO step, saved under docs/.

    python benchmarks/profile_steps.py [--model default] [--precision auto] [--out docs/profile]

The default profile's work, as `make run` does it: four SFT steps (one `sft` call, so its one-time setup is
spread as in a run) on 16 testbed examples each (LoRA r16 on the top 10 layers, packed rows, the 20 frozen
layers below run once per example: `budgetlab.prefix`), and an RL step of GRPO (4 prompts x 4 traces,
thinking to 64 tokens, the largest budget's summary, which GRPO trains on, then the PPO update), each after one untimed
warm-up step. The tables list operators by their own CPU time; the RL step's table is followed by the step's
split into sampling and update, from the step's own metrics. One Markdown file per CPU kind and precision,
`<out>/<kind>-<precision>.md` (`profile_name`): the kind tells an AMX Xeon from an AVX512-BF16 EPYC, which torch's
capability names alike (`budgetlab.precision.cpu_kind`).
"""

from __future__ import annotations

import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from budgetlab.config import set_openmp_wait  # noqa: E402
OPENMP = set_openmp_wait()  # before torch loads, as the main job does
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_ceiling import training_args, training_setup  # noqa: E402  (benchmarks/ is on sys.path as a script)
from budgetlab.precision import describe  # noqa: E402
from budgetlab.sft import SFTConfig, sft  # noqa: E402
from budgetlab.synthetic import make_testbed  # noqa: E402
from budgetlab.train import RLConfig, train_rl  # noqa: E402

ROWS = 20  # operators per table
SFT_STEPS = 4  # SFT steps in the profiled call


def profiled(fn) -> tuple[float, str]:
    """(wall seconds, operator table) of one call of fn under the torch profiler (CPU activity)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    return wall, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=ROWS)


def profile_name(kind: str, precision: str) -> str:
    """The page's file name: the CPU kind (`precision.cpu_kind`) and the precision, e.g. 'amx-bf16.md',
    'avx512bf16-bf16.md', 'avx2-fp32.md'."""
    return f"{kind.lower().replace('-', '')}-{precision}.md"


def main(argv=None) -> int:
    ap = training_args(__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/profile")
    args = ap.parse_args(argv)
    model, tok, choice, examples = training_setup(args, 16)
    precision, cpu, kind = choice["precision"], choice["cpu_capability"], choice["cpu_kind"]
    rows = make_testbed(64, seed=1)
    sections = []
    with tempfile.TemporaryDirectory() as d:
        cfg = SFTConfig(steps=1, batch_size=16, lr=1e-6, precision=precision, checkpoint_every=10**6)
        sft(model, tok, examples, cfg, f"{d}/warm", progress=False)  # warm-up: oneDNN's first-call work
        cfg.steps = SFT_STEPS  # several: the frozen base's one cast to bf16 per run is spread as in a real run
        wall, table = profiled(lambda: sft(model, tok, examples, cfg, f"{d}/sft", progress=False))
        sections.append((f"{SFT_STEPS} warm-start SFT steps (16 examples each, packed)", wall, table, ""))
        rl = RLConfig(method="grpo", steps=1, budgets=[16, 32, 48, 64], max_summary=12, precision=precision,
                      checkpoint_every=10**6, skip_idle=False).validate()  # the update's whole cost, idle groups too
        train_rl(model, tok, rows, rl, f"{d}/rl_warm", progress=False)  # warm-up step
        metrics = []
        wall, table = profiled(lambda: metrics.extend(train_rl(model, tok, rows, rl, f"{d}/rl", progress=False)))
        m = metrics[-1]
        split = (f"The step's own metrics: {m['step_seconds']:.2f} s, of which sampling (rollout and grading) "
                 f"{m['sample_seconds']:.2f} s; {m['gen_tokens']} tokens sampled.\n")
        sections.append(("One GRPO step (4 prompts x 4 traces, 64 thinking tokens, the summary at 64)",
                         wall, table, split))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / profile_name(kind, precision)
    lines = [f"# Profile: CPU capability {cpu} ({kind}), precision {describe(choice)}, {args.threads} threads, "
             f"{OPENMP}",
             "", f"Made by `python benchmarks/profile_steps.py {' '.join(argv if argv is not None else sys.argv[1:])}` on "
             f"{time.strftime('%Y-%m-%d')} (model {args.model}). Wall times include the profiler's own overhead.", ""]
    for title, wall, table, note in sections:
        lines += [f"## {title}: {wall:.2f} s under the profiler", "", note, "```", table, "```", ""]
    path.write_text("\n".join(lines))
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
