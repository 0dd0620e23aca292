"""Log-probabilities of chosen tokens through a frozen output head, chunked, with the gradient formed early.

A policy-gradient loss needs, per trained position n, log p(t_n) = h_n·w_{t_n} - logsumexp(h_n W^T) and the
entropy, and backpropagates only into the hidden state h_n (the head W stays frozen under LoRA). Going
through full logits costs four passes over a [positions, vocab] fp32 tensor (cast, logsumexp, softmax for
the entropy, and the backward's exp and scatter): 311 MB each for one default-profile GRPO step, the
largest elementwise cost of the update (LOG.md). Two facts remove it:

- rows are independent, so the vocabulary work runs in chunks of rows that stay in cache;
- d log p(t_n) / d h_n = w_{t_n} - Σ_v p_v w_v = (onehot(t_n) - p_n) W, a [D] vector that does not depend on
  the loss. The forward pass stores it, and the backward pass is one multiply by the upstream gradient: the
  logits are never recomputed or kept.

The numbers equal the logits path's (same bf16 matmul under autocast, same fp32 logsumexp); only the
gradient's last bits differ, because the cast to bf16 happens before the upstream gradient is applied.

Every chunk writes into the same [rows, vocab] buffers, allocated once per call: a fresh 33 MB tensor for each
of a chunk's intermediates cost more than the arithmetic on it. The entropy, which only the RL update logs, is
computed only when asked for. Together: a warm-start SFT step 1.72-1.87 → 1.49-1.59 s in bf16 on the AVX512
Xeon, 2.90-2.95 → 2.83-2.88 s in fp32, the same losses to the bit (LOG.md, fifteenth session).
"""

from __future__ import annotations

import torch

# Causal LMs whose logits are exactly `lm_head(last_hidden_state)` in transformers 5 (no softcapping or
# logit scale after the head); any other model is scored through its own forward.
PLAIN_HEAD_MODELS = ("llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2")
CHUNK_ELEMENTS = {"cpu": 1 << 23, "cuda": 1 << 27}  # fp32 logits per chunk: 32 MB on CPU, 512 MB on GPU


def plain_head(model):
    """(decoder, head weight) when `model`'s logits are decoder(...) @ W^T with W frozen, else None.

    The head must be a plain `nn.Linear` (a quantised head, e.g. bitsandbytes' Linear4bit, is not)."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = causal_lm.get_output_embeddings()
    if (getattr(causal_lm.config, "model_type", None) not in PLAIN_HEAD_MODELS
            or type(head) is not torch.nn.Linear or head.bias is not None or head.weight.requires_grad):
        return None
    return causal_lm.get_decoder(), head.weight


def _logsumexp_rows(logits: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """torch.logsumexp(logits, -1) by its own steps (the row max, infinities masked to 0, exp of the shifted
    rows, sum, log, plus the max), the shifted rows written into `work`: the same bits, no new [rows, vocab]."""
    top = logits.amax(-1, keepdim=True)
    top.masked_fill_(top.abs() == float("inf"), 0)
    return torch.sub(logits, top, out=work).exp_().sum(-1).log_().add_(top.squeeze(-1))


class _ChosenLogProb(torch.autograd.Function):
    """[N, D] hidden, [V, D] frozen head, [N] targets -> log p(target) [N] and entropy [N] (no gradient; None
    unless `with_entropy`)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype, chunk, with_entropy):
        w = weight.to(dtype)
        logp = hidden.new_empty(len(targets), dtype=torch.float32)
        entropy = torch.empty_like(logp) if with_entropy else None
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        shape = (min(chunk, len(targets)), weight.shape[0])  # one chunk's [rows, vocab], reused by every chunk
        logits_buf = hidden.new_empty(shape, dtype=torch.float32)
        work_buf = torch.empty_like(logits_buf)  # logsumexp's shifted rows, then the softmax
        low_buf = hidden.new_empty(shape, dtype=dtype) if dtype != torch.float32 else None
        for s in range(0, len(targets), chunk):
            h = hidden[s:s + chunk].to(dtype)
            logits, work = logits_buf[:len(h)], work_buf[:len(h)]
            if low_buf is None:
                torch.mm(h, w.T, out=logits)
            else:  # the matmul in the autocast dtype, then fp32, as lm_head's logits .float()
                logits.copy_(torch.mm(h, w.T, out=low_buf[:len(h)]))
            t = targets[s:s + chunk, None]
            logz = _logsumexp_rows(logits, work)
            logp[s:s + chunk] = logits.gather(-1, t).squeeze(-1) - logz
            p = torch.sub(logits, logz[:, None], out=work).exp_()
            if entropy is not None:
                entropy[s:s + chunk] = logz - logits.mul_(p).sum(-1)
            if grad is not None:  # (onehot - p) W: the gradient of log p(t) with respect to this hidden row
                direction = p.neg_().scatter_add_(-1, t, torch.ones_like(t, dtype=p.dtype))
                if low_buf is not None:
                    direction = low_buf[:len(h)].copy_(direction)
                grad[s:s + chunk] = (direction @ w).to(hidden.dtype)
        ctx.save_for_backward(grad)
        if entropy is not None:
            ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        (grad,) = ctx.saved_tensors
        return grad * grad_logp[:, None].to(grad.dtype), None, None, None, None, None


def chosen_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, entropy: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(hidden @ W^T)[n, targets[n]] and the entropy (None when `entropy` is False), both [N] fp32;
    differentiable in `hidden`.

    The matmul runs in the autocast dtype when autocast is on (as `lm_head` would), else in W's dtype."""
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)}: expected [N, D] and [N].")
    if weight.requires_grad:
        raise ValueError("chosen_logprobs trains no head: its weight must be frozen (requires_grad=False).")
    kind = hidden.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype
    chunk = max(1, CHUNK_ELEMENTS.get(kind, CHUNK_ELEMENTS["cuda"]) // weight.shape[0])
    return _ChosenLogProb.apply(hidden, weight, targets, dtype, chunk, entropy)
