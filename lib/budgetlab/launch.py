"""Data-parallel RL from the command line, one process per rank (torchrun or `accelerate launch`).

    torchrun --standalone --nproc_per_node 2 -m budgetlab.launch --model tiny --method grpo --steps 2 --out DIR
    accelerate launch --multi_gpu --num_processes 8 -m budgetlab.launch --model ORG/NAME --adapter qlora ...

Each rank samples its own prompts; gradients are averaged over ranks before every optimizer step, so all
ranks hold the same adapter. On CPU the processes talk over gloo (SPEC §10).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch


def adapter_digest(model) -> str:
    """A short hash of the trainable weights: equal on every rank when data parallel works."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m budgetlab.launch", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--adapter", default="lora", choices=["lora", "qlora"])
    ap.add_argument("--method", default="grpo")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step per process")
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--budgets", default="4,8")
    ap.add_argument("--beta", type=float, default=0.0, help="KL weight to the reference (the starting adapter)")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="start LoRA B at this noise scale (same on every rank) and keep the zero-B adapter as "
                         "the KL reference, so the policy differs from it and the KL term has a gradient: "
                         "used by the tests")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", action="store_true", help="force CPU (gloo) even where CUDA exists")
    args = ap.parse_args(argv)

    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from budgetlab.models import load_model, trainable_state
    from budgetlab.precision import resolve
    from budgetlab.synthetic import make_synthetic
    from budgetlab.train import RLConfig, train_rl

    cfg = RLConfig(method=args.method, steps=args.steps, prompts_per_step=args.prompts,
                   generations=args.generations, budgets=[int(b) for b in args.budgets.split(",")],
                   max_summary=4, beta=args.beta).validate()  # bad input fails here, before the process group starts
    acc = Accelerator(cpu=args.cpu or not torch.cuda.is_available())
    if acc.is_main_process:  # one owner per run directory (budgetlab.rundir); the other ranks write nothing there
        from budgetlab.rundir import claim

        claim(args.out)
    torch.manual_seed(0)  # identical initial adapter on every rank
    model, tok = load_model(args.model, adapter=args.adapter, lora_r=4,
                            device="cuda" if acc.device.type == "cuda" else "cpu")
    # every rank computes in the precision rank 0 measured: timings differ between processes, results must not
    choice = [resolve(cfg.precision, model)["precision"]]
    broadcast_object_list(choice)
    cfg.precision = choice[0]
    reference = None
    if args.perturb:
        reference = trainable_state(model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, args.perturb, generator=torch.Generator().manual_seed(1))
    initial = adapter_digest(model)
    out = Path(args.out)
    try:
        train_rl(model, tok, make_synthetic(32, levels=(1, 2), seed=0), cfg, out, accelerator=acc,
                 progress=acc.is_main_process, reference=reference)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{acc.process_index}.json").write_text(json.dumps(
            {"rank": acc.process_index, "world_size": acc.num_processes, "initial": initial,
             "digest": adapter_digest(model)}))
        acc.wait_for_everyone()
    finally:
        acc.end_training()  # destroys the process group: avoids gloo's abort at exit (SPEC §10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
