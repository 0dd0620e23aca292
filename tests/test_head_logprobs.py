"""Chosen-token log-probabilities through a frozen head: equal to the full-logits computation, gradient included."""

import pytest
import torch

import budgetlab.head_logprobs as hl
from budgetlab.losses import token_logprobs
from budgetlab.packing import TrainSeq, collate, pack_branches


def reference(hidden, weight, targets):
    """The textbook path: full logits, log_softmax, gather; entropy -Σ p log p."""
    logp_all = torch.log_softmax(hidden @ weight.T, dim=-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp_all.gather(-1, targets[:, None]).squeeze(-1), entropy.detach()


@pytest.mark.parametrize("chunk_elements", [10 * 50, 1 << 23])  # 10 rows per chunk (4 chunks), or one chunk
def test_chosen_logprobs_equal_log_softmax_and_its_gradient_in_fp32(monkeypatch, chunk_elements):
    monkeypatch.setitem(hl.CHUNK_ELEMENTS, "cpu", chunk_elements)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=g)
    weight = torch.randn(50, 8, generator=g)
    targets = torch.randint(0, 50, (37,), generator=g)
    upstream = torch.randn(37, generator=g)  # any loss: Σ_n c_n log p_n

    h1 = hidden.clone().requires_grad_()
    logp, entropy = hl.chosen_logprobs(h1, weight, targets)
    (logp * upstream).sum().backward()
    h2 = hidden.clone().requires_grad_()
    ref_logp, ref_entropy = reference(h2, weight, targets)
    (ref_logp * upstream).sum().backward()

    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(entropy, ref_entropy)
    torch.testing.assert_close(h1.grad, h2.grad)
    assert not entropy.requires_grad


def test_chosen_logprobs_of_a_one_hot_head_are_known_by_hand():
    # hidden = [ln 3, 0] against head rows e1, e2: logits [ln 3, 0], p = [3/4, 1/4]
    hidden = torch.tensor([[torch.log(torch.tensor(3.0)).item(), 0.0]], requires_grad=True)
    weight = torch.eye(2)
    logp, entropy = hl.chosen_logprobs(hidden, weight, torch.tensor([0]))
    assert logp.item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)
    assert entropy.item() == pytest.approx(-(0.75 * torch.log(torch.tensor(0.75)) + 0.25 * torch.log(torch.tensor(0.25))).item(), abs=1e-6)
    logp.sum().backward()  # d log p_0 / dh = (onehot - p) W = [1/4, -1/4]
    torch.testing.assert_close(hidden.grad, torch.tensor([[0.25, -0.25]]))


def test_chosen_logprobs_under_bf16_autocast_match_the_bf16_logits_path():
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(20, 16, generator=g), torch.randn(300, 16, generator=g) * 0.3
    targets = torch.randint(0, 300, (20,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, _ = hl.chosen_logprobs(hidden, weight, targets)
        logits = torch.nn.functional.linear(hidden, weight).float()  # what lm_head gives under autocast
    expected = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
    torch.testing.assert_close(logp, expected, rtol=1e-5, atol=1e-5)


def fresh_per_chunk(hidden, weight, targets, dtype, chunk):
    """The plain expressions, new tensors for every chunk: what the reused buffers must reproduce bit for bit."""
    w = weight.to(dtype)
    logp, entropy, grad = [], [], []
    for s in range(0, len(targets), chunk):
        logits = (hidden[s:s + chunk].to(dtype) @ w.T).float()
        t = targets[s:s + chunk, None]
        logz = torch.logsumexp(logits, -1)
        logp.append(logits.gather(-1, t).squeeze(-1) - logz)
        p = (logits - logz[:, None]).exp_()
        entropy.append(logz - (p * logits).sum(-1))
        direction = p.neg_().scatter_add_(-1, t, torch.ones_like(t, dtype=p.dtype))
        grad.append((direction.to(dtype) @ w).to(hidden.dtype))
    return torch.cat(logp), torch.cat(entropy), torch.cat(grad)


@pytest.mark.parametrize("bf16", [False, True])
def test_reused_chunk_buffers_give_the_bits_of_fresh_tensors_and_the_entropy_only_when_asked(monkeypatch, bf16):
    monkeypatch.setitem(hl.CHUNK_ELEMENTS, "cpu", 8 * 300)  # 8 rows a chunk: 5 chunks, the last one of 5 rows
    g = torch.Generator().manual_seed(4)
    hidden, weight = torch.randn(37, 16, generator=g), torch.randn(300, 16, generator=g) * 0.3
    targets = torch.randint(0, 300, (37,), generator=g)
    upstream = torch.randn(37, generator=g)
    dtype = torch.bfloat16 if bf16 else torch.float32
    want_logp, want_entropy, want_grad = fresh_per_chunk(hidden, weight, targets, dtype, 8)
    for with_entropy in (True, False):
        h = hidden.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logp, entropy = hl.chosen_logprobs(h, weight, targets, entropy=with_entropy)
        (logp * upstream).sum().backward()
        assert torch.equal(logp, want_logp)
        assert torch.equal(h.grad, want_grad * upstream[:, None])
        assert torch.equal(entropy, want_entropy) if with_entropy else entropy is None


def test_logsumexp_by_its_steps_equals_torch_logsumexp_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 1000, generator=g) * torch.tensor([1.0, 10.0, 100.0, 1e-3, 30.0, 5.0])[:, None]
    logits[4, 17] = float("-inf")  # a token ruled out
    logits[5, 3] = float("inf")  # a row whose max is infinite: masked to 0 as torch does
    got = hl._logsumexp_rows(logits, torch.empty_like(logits))
    assert torch.equal(got, torch.logsumexp(logits, -1))


def test_chosen_logprobs_refuse_a_trainable_head_and_mismatched_shapes():
    hidden, weight = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="must be frozen"):
        hl.chosen_logprobs(hidden, weight.requires_grad_(), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected \[N, D\] and \[N\]"):
        hl.chosen_logprobs(hidden, weight.detach(), torch.tensor([0, 1]))


def batch_of_plain_and_packed_rows():
    g = torch.Generator().manual_seed(3)
    trunk_ids = torch.randint(3, 200, (12,), generator=g).tolist()
    trunk = TrainSeq(trunk_ids, torch.randn(12, generator=g).tolist(), [False] * 3 + [True] * 9)
    branches = [TrainSeq(trunk_ids[:k] + torch.randint(3, 200, (4,), generator=g).tolist(),
                         [0.0] * (k + 2) + [0.7, -1.3], [False] * (k + 2) + [True, True]) for k in (5, 8)]
    plain = [TrainSeq(torch.randint(3, 200, (n,), generator=g).tolist(), [1.0] * n, [False] * k + [True] * (n - k))
             for n, k in ((10, 4), (7, 6))]
    return [collate(plain, pad_id=0), collate([pack_branches(trunk, branches)], pad_id=0)]


@pytest.mark.parametrize("bf16", [False, True])
def test_token_logprobs_through_the_head_equal_those_through_the_models_logits(monkeypatch, bf16):
    from budgetlab.models import load_model

    torch.manual_seed(0)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    assert hl.plain_head(model) is not None  # the tiny Llama takes the head path

    def run(t):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logp, ent = token_logprobs(model, t["ids"], t["attention"], True, t.get("position"), t["mask"])
        (logp * t["adv"]).sum().backward()
        return logp.detach(), ent, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    for t in batch_of_plain_and_packed_rows():
        head_path = run(t)
        with monkeypatch.context() as m:
            m.setattr(hl, "PLAIN_HEAD_MODELS", ())
            assert hl.plain_head(model) is None
            logits_path = run(t)
        tol = dict(rtol=2e-2, atol=2e-3) if bf16 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(head_path[0], logits_path[0], **tol)
        torch.testing.assert_close(head_path[1], logits_path[1], **tol)
        assert (head_path[0][~t["mask"].bool()] == 0).all()  # unscored positions are 0
        for a, b in zip(head_path[2], logits_path[2]):  # fp32 sums in another order: relative to the scale
            torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["rtol"] * float(b.abs().max()))


@pytest.mark.parametrize("plain", [True, False])
def test_token_logprobs_at_a_temperature_score_softmax_of_logits_over_temperature(monkeypatch, logits_scaled, plain):
    # Scores at T = 0.5 against scores at T = 1 of logits doubled: both paths, gradients included.
    from budgetlab.models import load_model

    torch.manual_seed(0)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    if not plain:
        monkeypatch.setattr(hl, "PLAIN_HEAD_MODELS", ())

    def run(t, temperature):
        model.zero_grad()
        logp, ent = token_logprobs(model, t["ids"], t["attention"], True, t.get("position"), t["mask"],
                                   temperature=temperature)
        (logp * t["adv"]).sum().backward()
        return logp.detach(), ent, [p.grad.clone() for p in model.parameters() if p.requires_grad]

    for t in batch_of_plain_and_packed_rows():
        hot = run(t, 0.5)
        with logits_scaled(model, 2.0):
            expected = run(t, 1.0)
        plain_t = run(t, 1.0)
        torch.testing.assert_close(hot[0], expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hot[1], expected[1], rtol=1e-5, atol=1e-5)
        for a, b in zip(hot[2], expected[2]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
        assert not torch.allclose(hot[0], plain_t[0])  # the temperature changed the scores
    with pytest.raises(ValueError, match="temperature=0"):
        token_logprobs(model, t["ids"], t["attention"], temperature=0)
