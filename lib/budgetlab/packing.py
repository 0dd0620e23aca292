"""How training sequences are laid out in rows: `TrainSeq`, packing, and the tensors a batch becomes.

A training example is a `TrainSeq`: token ids, a per-token advantage, and a mask of the tokens the
model generated and should learn from (inserted markers, prompts and padding are never trained).

Several completions that share a prefix can be packed into one `TrainSeq` (`pack_branches`): the
shared prefix is read once, each branch attends to the prefix up to its own start and to itself,
and every branch is still normalised and counted as a sequence of its own, so the loss and its
gradient equal those of the unpacked sequences (BRPO's summaries at every budget, SPEC §7; a GRPO
group's completions after their one prompt, `share_prompts`). Unrelated sequences and such rows are
packed side by side the same way (`pack_examples`, the SFT step and the RL update): no padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class TrainSeq:
    """ids[L]; adv[L] and mask[L] are aligned with ids: position t says how to train the prediction of ids[t]."""

    ids: list[int]
    adv: list[float]
    mask: list[bool]
    weight: float = 1.0  # per-sequence weight (IBPO's selection, SFT example weights)
    # Packed rows: each token's segment and position id. In `pack_branches` segment 0 is the trunk, k >= 1 the
    # k-th branch (a branch restarts where it leaves the trunk); side by side (`pack_examples`) a segment that
    # starts at position 0 is a sequence or trunk of its own. None for a plain sequence.
    segment: list[int] | None = None
    position: list[int] | None = None
    # [L, hidden]: each token's state after the frozen decoder layers, when the rollout kept them (the update then
    # runs only the layers above: `prefix.recording_states`); None: the update computes them
    states: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not (len(self.ids) == len(self.adv) == len(self.mask)):
            raise ValueError(f"TrainSeq parts differ in length: ids {len(self.ids)}, adv {len(self.adv)}, "
                             f"mask {len(self.mask)}.")
        if self.states is not None and len(self.states) != len(self.ids):
            raise ValueError(f"TrainSeq states cover {len(self.states)} tokens, ids {len(self.ids)}.")

    @property
    def n_trained(self) -> int:
        return sum(self.mask)

    @property
    def first_trained(self) -> int:
        """Index of the first trained token (len(ids) if none): what comes before it is the untrained prefix."""
        return next((i for i, m in enumerate(self.mask) if m), len(self.ids))

    @property
    def n_sequences(self) -> int:
        """How many sequences this stands for in the loss (packed branches count one each)."""
        return 1 if self.segment is None else max(self.segment) + 1

    @property
    def idle(self) -> bool:
        """Every trained token's advantage is 0 (a GRPO group that scored alike): under the PPO-clip loss
        without a KL term the sequence adds exactly 0 to the loss and to its gradient."""
        return not any(a for a, m in zip(self.adv, self.mask) if m)

    def trained_per_sequence(self) -> list[int]:
        if self.segment is None:
            return [self.n_trained]
        counts = [0] * self.n_sequences
        for seg, m in zip(self.segment, self.mask):
            counts[seg] += int(m)
        return counts


def pack_branches(trunk: TrainSeq, branches: Sequence[TrainSeq], untrained_only: bool = False) -> TrainSeq:
    """One sequence holding `trunk` and every branch that shares a prefix with it, the prefix read once.

    A branch keeps only its tokens after the longest prefix it shares with the trunk; their position ids
    continue from that prefix, and they see the trunk up to there and their own earlier tokens only.
    The shared prefix must be untrained in the branch (it is trained, once, in the trunk). A branch's first own
    token is scored from the trunk's token before it in the row, so it must not be trained either (BRPO's
    branches begin with the untrained end-of-thinking marker). `untrained_only` ends the sharing one token
    before the branch's first trained token instead, so that token is scored from the branch's own context
    (`share_prompts`).
    """
    if trunk.segment is not None:
        raise ValueError("pack_branches got an already packed trunk; pack plain sequences once.")
    ids, adv, mask = list(trunk.ids), list(trunk.adv), list(trunk.mask)
    segment, position = [0] * len(ids), list(range(len(ids)))
    states = [trunk.states]
    for k, br in enumerate(branches, start=1):
        share, limit = 0, min(len(br.ids), len(trunk.ids)) - 1
        if untrained_only:  # the token before the branch's first trained one stays its own: its logits predict it
            limit = min(limit, br.first_trained - 1)
        while share < limit and br.ids[share] == trunk.ids[share]:
            share += 1
        if any(br.mask[:share]):
            raise ValueError(f"branch {k} trains tokens it shares with the trunk (first {share}); "
                             f"only a branch's own continuation can be trained when packed.")
        ids += br.ids[share:]
        adv += br.adv[share:]
        mask += br.mask[share:]
        segment += [k] * (len(br.ids) - share)
        position += list(range(share, len(br.ids)))
        states.append(br.states[share:] if br.states is not None else None)
    return TrainSeq(ids, adv, mask, trunk.weight, segment, position, joined(states))


def share_prompts(seqs: Sequence[TrainSeq]) -> list[TrainSeq]:
    """Neighbouring plain sequences that begin with the same untrained prefix (a GRPO group's prompt) packed
    as branches of the first (`pack_branches`): the prefix is read once per group, not once per completion.
    Every sequence keeps its own loss; an already packed sequence stays as it is."""
    def prefix(s: TrainSeq) -> list[int]:
        return s.ids[:s.first_trained]

    out: list[TrainSeq] = []
    group: list[TrainSeq] = []
    for s in list(seqs) + [None]:
        if group and (s is None or s.segment is not None or prefix(s) != prefix(group[0]) or not prefix(s)):
            out.append(pack_branches(group[0], group[1:], untrained_only=True))
            group = []
        if s is None:
            break
        if s.segment is not None:
            out.append(s)
        else:
            group.append(s)
    return out


def pack_order(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Which sequences `pack_examples` puts in each row, in order: longest first, each into the first row with
    room for it in max(width, longest) tokens (the sort is stable, so ties keep their order)."""
    width = max([width] + list(lengths))
    rows: list[list[int]] = []
    used: list[int] = []  # tokens in each row so far
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = next((k for k, n in enumerate(used) if n + lengths[i] <= width), len(rows))
        if k == len(rows):
            rows.append([])
            used.append(0)
        rows[k].append(i)
        used[k] += lengths[i]
    return rows


def with_shares(s: TrainSeq) -> TrainSeq:
    """`s` with each trained token's share of its loss as `adv` (weight / trained tokens) and weight 1: then
    -Σ adv · log p (`packed_sft_loss`) is its `weighted_sft_loss`, however it is packed."""
    share = s.weight / max(1, s.n_trained)
    return TrainSeq(s.ids, [share if m else 0.0 for m in s.mask], s.mask, 1.0, s.segment, s.position, s.states)


def pack_examples(seqs: Sequence[TrainSeq], width: int, shares: bool = True) -> list[TrainSeq]:
    """Whole plain sequences packed into rows of at most max(width, longest) tokens, with no padding inside.

    Rows as `pack_order` gives them. In a row, sequence k is segment k with position ids
    from 0: it attends only to itself (`packed_attention`), so it is scored exactly as alone. With `shares`,
    `adv` becomes each trained token's share of its sequence's loss, weight / trained tokens, so -Σ adv · log p
    over the rows equals `weighted_sft_loss` over the unpacked sequences (the SFT step, LOG.md: ~20% less time
    than padding a batch of 16 testbed examples to its longest). Without it `adv` is kept, for the PPO loss,
    which normalises each segment as a sequence of its own (the RL update)."""
    if shares and any(s.segment is not None for s in seqs):
        raise ValueError("pack_examples got packed branches to turn into shares; give them shares before packing.")
    packed = []
    for row in pack_order([len(s.ids) for s in seqs], width):
        ids, adv, mask, segment, position = [], [], [], [], []
        states = [seqs[i].states for i in row]
        for s in (seqs[i] for i in row):
            first = max(segment, default=-1) + 1  # packed branches keep their layout, renumbered after the others
            ids += s.ids
            adv += with_shares(s).adv if shares else s.adv
            mask += s.mask
            segment += [first + k for k in s.segment] if s.segment is not None else [first] * len(s.ids)
            position += s.position if s.position is not None else list(range(len(s.ids)))
        packed.append(TrainSeq(ids, adv, mask, 1.0, segment, position, joined(states)))
    return packed


def joined(states: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The parts' states end to end, or None when any part has none."""
    return None if any(s is None for s in states) else torch.cat(list(states))


def packed_attention(segment: torch.Tensor, position: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Boolean attention [B, 1, L, L] for packed rows: query t sees key u (u <= t) in its own segment, or in
    its trunk before the query's segment starts. A segment that starts at position 0 is a sequence of its own
    (a trunk, or a plain sequence of `pack_examples`); one that starts later is a branch of the nearest such
    segment before it (`pack_branches`), so several groups of branches can share a row. Padding queries see
    only themselves."""
    big = torch.iinfo(position.dtype).max
    seg_ids = torch.arange(int(segment.max()) + 1, device=segment.device)
    in_seg = (segment.unsqueeze(-1) == seg_ids) & valid.unsqueeze(-1)  # [B, L, K]
    start = torch.where(in_seg, position.unsqueeze(-1), torch.full_like(in_seg, big, dtype=position.dtype)).min(1).values
    trunk = torch.where(start == 0, seg_ids, torch.full_like(seg_ids, -1)).cummax(1).values  # [B, K]
    start_of_query = start.gather(1, segment.clamp(min=0))  # [B, L]
    trunk_of_query = trunk.gather(1, segment.clamp(min=0))  # [B, L]
    order = torch.arange(segment.shape[1], device=segment.device)
    causal = order.view(1, -1, 1) >= order.view(1, 1, -1)  # [1, Lq, Lk]
    same = segment.unsqueeze(2) == segment.unsqueeze(1)
    trunk_before = ((segment.unsqueeze(1) == trunk_of_query.unsqueeze(2))
                    & (position.unsqueeze(1) < start_of_query.unsqueeze(2)))
    allowed = causal & (same | trunk_before) & valid.unsqueeze(1) & valid.unsqueeze(2)
    allowed |= torch.eye(segment.shape[1], dtype=torch.bool, device=segment.device).unsqueeze(0)
    return allowed.unsqueeze(1)


def collate(seqs: Sequence[TrainSeq], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of TrainSeq into ids, attention, adv and mask tensors of shape [B, L].

    With packed sequences among them, also `segment` and `position` [B, L] (padding: segment -1) and
    `attention` becomes the boolean [B, 1, L, L] of `packed_attention`. When every sequence has `states`, also
    `states` [B, L, hidden] (padding: 0)."""
    width = max(len(s.ids) for s in seqs)
    out = {"ids": torch.full((len(seqs), width), pad_id, dtype=torch.long),
           "attention": torch.zeros((len(seqs), width), dtype=torch.long),
           "adv": torch.zeros((len(seqs), width)),
           "mask": torch.zeros((len(seqs), width), dtype=torch.bool),
           "weight": torch.tensor([s.weight for s in seqs], dtype=torch.float32)}
    for i, s in enumerate(seqs):
        n = len(s.ids)
        out["ids"][i, :n] = torch.tensor(s.ids)
        out["attention"][i, :n] = 1
        out["adv"][i, :n] = torch.tensor(s.adv, dtype=torch.float32)
        out["mask"][i, :n] = torch.tensor(s.mask)
    if any(s.segment is not None for s in seqs):
        out["segment"] = torch.full((len(seqs), width), -1, dtype=torch.long)
        out["position"] = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s.ids)
            out["segment"][i, :n] = torch.tensor(s.segment if s.segment is not None else [0] * n)
            out["position"][i, :n] = torch.tensor(s.position if s.position is not None else list(range(n)))
        out["attention"] = packed_attention(out["segment"], out["position"], out["attention"].bool())
    if all(s.states is not None for s in seqs):
        out["states"] = seqs[0].states.new_zeros((len(seqs), width, seqs[0].states.shape[-1]))
        for i, s in enumerate(seqs):
            out["states"][i, :len(s.ids)] = s.states
    return out
