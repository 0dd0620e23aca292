"""Losses: PPO clip, normalisers, KL, weighted SFT, collation — literal cases worked by hand."""

import math

import pytest
import torch

from budgetlab.losses import normalise, packed_sft_loss, ppo_clip_loss, token_logprobs, weighted_sft_loss
from budgetlab.packing import TrainSeq, collate, pack_branches, pack_examples, packed_attention


def test_ppo_loss_at_ratio_one_is_minus_mean_advantage_per_sequence():
    # one sequence, 2 trained tokens with A = 1 and 3, ratio 1: per-token loss -1, -3; sequence mean = -2
    logp = torch.tensor([[0.0, -1.0, -2.0]])
    adv = torch.tensor([[0.0, 1.0, 3.0]])
    mask = torch.tensor([[False, True, True]])
    loss, stats = ppo_clip_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx(-2.0)
    assert stats["clip_frac"] == 0.0


def test_constant_normaliser_divides_by_max_len_not_sequence_length():
    # Dr. GRPO: Σ token loss / max_len = (-1 - 3) / 8 = -0.5
    logp = torch.tensor([[0.0, -1.0, -2.0]])
    adv = torch.tensor([[0.0, 1.0, 3.0]])
    mask = torch.tensor([[False, True, True]])
    loss, _ = ppo_clip_loss(logp, logp.detach(), adv, mask, normaliser="constant", max_len=8)
    assert loss.item() == pytest.approx(-0.5)


def test_positive_advantage_ratio_above_clip_is_clipped_and_counted():
    # ratio = e^0.5 ≈ 1.65 > 1.2 with A = 1: min(1.65, 1.2) = 1.2 -> loss -1.2, one clipped token of one
    old = torch.tensor([[0.0, -1.0]])
    new = torch.tensor([[0.0, -0.5]])
    loss, stats = ppo_clip_loss(new, old, torch.tensor([[0.0, 1.0]]), torch.tensor([[False, True]]))
    assert loss.item() == pytest.approx(-1.2)
    assert stats["clip_frac"] == pytest.approx(1.0)


def test_clip_higher_lets_a_positive_advantage_ratio_rise_further():
    old = torch.tensor([[0.0, -1.0]])
    new = torch.tensor([[0.0, -0.8]])  # ratio e^0.2 ≈ 1.2214
    loss, stats = ppo_clip_loss(new, old, torch.tensor([[0.0, 1.0]]), torch.tensor([[False, True]]),
                                clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-math.exp(0.2), rel=1e-5)
    assert stats["clip_frac"] == 0.0


def test_kl_term_is_zero_when_policy_equals_reference_and_positive_otherwise():
    logp = torch.tensor([[0.0, -1.0]])
    mask = torch.tensor([[False, True]])
    zero_adv = torch.zeros(1, 2)
    same, st = ppo_clip_loss(logp, logp, zero_adv, mask, ref_logp=logp, beta=0.1)
    assert same.item() == pytest.approx(0.0) and st["kl"] == pytest.approx(0.0)
    # k3 with diff = ref - logp = -0.5: e^-0.5 + 0.5 - 1 ≈ 0.10653; × β 0.1
    other, st = ppo_clip_loss(logp, logp, zero_adv, mask, ref_logp=logp - 0.5, beta=0.1)
    assert other.item() == pytest.approx(0.1 * (math.exp(-0.5) + 0.5 - 1), rel=1e-5)


def test_unknown_normaliser_and_missing_max_len_raise_one_sentence():
    x = torch.zeros(1, 2)
    m = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="normaliser='token'"):
        normalise(x, m, "token", None)
    with pytest.raises(ValueError, match="max_len"):
        normalise(x, m, "constant", None)


def test_weighted_sft_loss_is_weighted_mean_negative_loglik():
    # seq 1: tokens logp -1, -3 (mean -2) weight 1; seq 2: logp -4 weight 0.5 -> 2 + 2 = 4
    logp = torch.tensor([[0.0, -1.0, -3.0], [0.0, -4.0, 0.0]])
    mask = torch.tensor([[False, True, True], [False, True, False]])
    assert weighted_sft_loss(logp, mask, torch.tensor([1.0, 0.5])).item() == pytest.approx(4.0)


def test_collate_right_pads_and_keeps_masks_aligned():
    seqs = [TrainSeq([5, 6, 7], [0, 1, 1], [False, True, True]), TrainSeq([8], [0], [False], weight=2.0)]
    t = collate(seqs, pad_id=0)
    assert t["ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert t["attention"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert t["mask"].tolist() == [[False, True, True], [False, False, False]]
    assert t["weight"].tolist() == [1.0, 2.0]


def test_trainseq_with_parts_of_different_length_is_refused():
    with pytest.raises(ValueError, match="differ in length"):
        TrainSeq([1, 2], [0.0], [True, True])


def test_pack_branches_keeps_only_what_each_branch_adds_after_the_shared_prefix():
    trunk = TrainSeq([1, 2, 3, 4, 5], [0, 1, 1, 1, 1], [False, True, True, True, True])
    branch = TrainSeq([1, 2, 9, 8], [0, 0, 0, 2], [False, False, False, True])
    p = pack_branches(trunk, [branch])
    assert p.ids == [1, 2, 3, 4, 5, 9, 8]
    assert p.segment == [0, 0, 0, 0, 0, 1, 1] and p.position == [0, 1, 2, 3, 4, 2, 3]
    assert p.mask == [False, True, True, True, True, False, True] and p.adv[-1] == 2
    assert p.n_sequences == 2 and p.trained_per_sequence() == [4, 1]
    with pytest.raises(ValueError, match="shares with the trunk"):
        pack_branches(trunk, [TrainSeq([1, 2, 9], [0, 1, 0], [False, True, False])])


def test_packed_attention_lets_a_branch_see_the_trunk_only_before_its_start():
    # trunk positions 0..3, branch 1 starts at position 2 (packed slots 4, 5), one padding slot
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, -1]])
    pos = torch.tensor([[0, 1, 2, 3, 2, 3, 0]])
    valid = torch.tensor([[True] * 6 + [False]])
    a = packed_attention(seg, pos, valid)[0, 0]
    assert a[3].tolist() == [True, True, True, True, False, False, False]  # trunk: plain causal
    assert a[4].tolist() == [True, True, False, False, True, False, False]  # branch: trunk 0..1, then itself
    assert a[5].tolist() == [True, True, False, False, True, True, False]
    assert a[6].tolist() == [False] * 6 + [True]  # padding sees itself only (no all-masked row)


@pytest.mark.parametrize("normaliser", ["sequence", "constant"])
def test_packed_loss_and_gradient_equal_those_of_separate_sequences(normaliser):
    from budgetlab.models import load_model

    torch.manual_seed(0)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    g = torch.Generator().manual_seed(1)
    trunk_ids = torch.randint(3, 200, (12,), generator=g).tolist()
    trunk = TrainSeq(trunk_ids, torch.randn(12, generator=g).tolist(), [False] * 3 + [True] * 9)
    branches = [TrainSeq(trunk_ids[:k] + torch.randint(3, 200, (4,), generator=g).tolist(),
                         [0.0] * (k + 2) + [0.7, -1.3], [False] * (k + 2) + [True, True]) for k in (5, 8)]
    plain_seqs, packed_seqs = [trunk, *branches], [pack_branches(trunk, branches)]
    max_len = max(s.n_trained for s in plain_seqs)

    def loss_and_grads(seqs):
        model.zero_grad()
        t = collate(seqs, pad_id=0)
        logp, _ = token_logprobs(model, t["ids"], t["attention"], position=t.get("position"))
        loss, _ = ppo_clip_loss(logp, logp.detach() - 0.1, t["adv"], t["mask"], normaliser=normaliser,
                                max_len=max_len, segment=t.get("segment"))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    loss_plain, grads_plain = loss_and_grads(plain_seqs)
    loss_packed, grads_packed = loss_and_grads(packed_seqs)
    assert loss_packed == pytest.approx(float(loss_plain), rel=1e-5)
    for a, b in zip(grads_plain, grads_packed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_pack_examples_puts_every_example_once_in_rows_no_wider_than_asked():
    seqs = [TrainSeq([7] * n, [1.0] * n, [False] * 2 + [True] * (n - 2), weight=w)
            for n, w in ((6, 1.0), (5, 2.0), (4, 1.0), (3, 0.5), (9, 1.0))]
    rows = pack_examples(seqs, width=10)
    assert sorted(len(r.ids) for r in rows) == [8, 9, 10]  # 9 | 6+4 | 5+3: longest first, first row with room
    assert sum(len(r.ids) for r in rows) == sum(len(s.ids) for s in seqs)
    for r in rows:
        for k in set(r.segment):  # each segment is one example, positions from 0, shares summing to its weight
            at = [i for i, seg in enumerate(r.segment) if seg == k]
            assert [r.position[i] for i in at] == list(range(len(at)))
            assert sum(r.adv[i] for i in at) == pytest.approx({9: 1.0, 6: 1.0, 5: 2.0, 4: 1.0, 3: 0.5}[len(at)])
    narrow = pack_examples(seqs, width=4)  # narrower than the longest example: the rows widen to it (9 | 6+3 | 5+4)
    assert sorted(len(r.ids) for r in narrow) == [9, 9, 9]
    with pytest.raises(ValueError, match="packed branches to turn into shares"):  # a row's shares are its own
        pack_examples(rows, width=10)
    again = pack_examples(rows, width=30, shares=False)  # packed rows side by side, their segments renumbered
    assert sum(len(r.ids) for r in again) == sum(len(r.ids) for r in rows)
    assert all(sorted(set(r.segment)) == list(range(len(set(r.segment)))) for r in again)


def test_packed_examples_score_exactly_as_each_example_alone():
    """The SFT step's packing: loss and LoRA gradients equal weighted_sft_loss over the padded batch."""
    from budgetlab.models import load_model

    torch.manual_seed(0)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    g = torch.Generator().manual_seed(2)
    seqs = [TrainSeq(torch.randint(3, 200, (n,), generator=g).tolist(), [1.0] * n,
                     [False] * 3 + [True] * (n - 3), weight=w) for n, w in ((11, 1.0), (7, 0.5), (5, 2.0), (9, 1.0))]

    def loss_and_grads(packed):
        model.zero_grad()
        t = collate(pack_examples(seqs, width=16) if packed else seqs, pad_id=0)
        logp, _ = token_logprobs(model, t["ids"], t["attention"], mask=t["mask"], position=t.get("position"))
        loss = packed_sft_loss(logp, t["adv"]) if packed else weighted_sft_loss(logp, t["mask"], t["weight"])
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    loss_plain, grads_plain = loss_and_grads(packed=False)
    loss_packed, grads_packed = loss_and_grads(packed=True)
    assert loss_packed == pytest.approx(float(loss_plain), rel=1e-5)
    for a, b in zip(grads_plain, grads_packed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_scoring_only_from_the_first_trained_column_changes_no_trained_log_prob_or_entropy():
    from budgetlab.models import load_model

    torch.manual_seed(0)
    model, _ = load_model("tiny", adapter="lora", lora_r=4)
    g = torch.Generator().manual_seed(2)
    seqs = [TrainSeq(torch.randint(3, 200, (n,), generator=g).tolist(), [1.0] * n, [False] * k + [True] * (n - k))
            for n, k in ((10, 4), (7, 6), (12, 5))]
    t = collate(seqs, pad_id=0)
    full, full_ent = token_logprobs(model, t["ids"], t["attention"], with_entropy=True)
    part, part_ent = token_logprobs(model, t["ids"], t["attention"], with_entropy=True, mask=t["mask"])
    assert part.shape == full.shape and (part[:, :4] == 0).all()  # columns 0..3 train in no row
    torch.testing.assert_close(part[t["mask"]], full[t["mask"]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(part_ent[t["mask"]], full_ent[t["mask"]], rtol=1e-5, atol=1e-6)
