"""Unlikelihood of the items a user has already read, for the generative models.

Token-level unlikelihood (Welleck et al., ICLR 2020, Eq. 4): beside the next
item's likelihood, -log(1 - p(item)) for items the model should not predict.
On a log where no user reads an item twice (Beauty), the items already read are
such items; learning it from the data is the model's job, so the plain
protocol (no filtering of the history at evaluation) stays plain.

SASRec and H2Rec score the whole catalog at every position, so their term covers
every read item at no extra cost (`sidrec.models.sasrec.full_softmax_loss`). A
SID model gets an item's probability only by running its code head along that
item's SID, so here the term is estimated on a random one in `SEEN_EVERY` (4)
positions, one read item each, drawn uniformly from the items read up to that
position. Their rows join the targets' rows in the one pass of the head: a
quarter more rows and no more ops (SID-GPT's Beauty steps are op-bound: a
second head pass cost +34% of an epoch, the joined rows ~9%).

    positions, read = sample_read_items(inputs, targets, SEEN_EVERY)
    logits = head(cat([h, h[positions]]), cat([targets, read]))    # one pass
    loss = ce(logits[:n]) + weight * read_unlikelihood(logits[n:], codes[n:], read)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SEEN_EVERY", "not_again", "read_unlikelihood", "sample_read_items"]

# A SID model's term is estimated on one training position in SEEN_EVERY (one read item
# each): its code head runs on 1 / SEEN_EVERY more rows.
SEEN_EVERY = 4


def not_again(log_p: Tensor) -> Tensor:
    """-log(1 - p) from log p, elementwise; the clamp keeps p = 1 finite."""
    return -torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))


def sample_read_items(inputs: Tensor, targets: Tensor, every: int) -> tuple[Tensor, Tensor]:
    """In each row, ceil(s / every) positions drawn at random, and one item read up to
    each, drawn uniformly from the real items at <= t. Every count and shape comes from
    the inputs' own (`rand_like` of a strided view): no host sync, and it traces under
    torch.compile(dynamic=True), where rand / randint of a computed size do not.

    inputs, targets: [b x s], left-padded with -1. Returns flat position indices [k]
    into the [b x s] grid and the items [k]: -1 where none applies (padding, an
    ignored target, or the drawn item is the position's own target).
    """
    b, s = inputs.shape
    uniform = torch.rand_like(inputs[:, ::every], dtype=torch.float)  # [b x ceil(s / every)]
    t = (uniform * s).long().clamp(max=s - 1)
    row = torch.arange(b, device=inputs.device)[:, None].expand_as(t)
    row, t = row.flatten(), t.flatten()
    positions = row * s + t
    # Left padding: the real items at <= t are the last n_t of inputs[row, :t + 1].
    read_so_far = (inputs >= 0).long().cumsum(1)[row, t]  # n_t
    draw = torch.rand_like(t, dtype=torch.float)
    j = t - (draw * read_so_far).long().clamp(max=(read_so_far - 1).clamp(min=0))
    items = inputs[row, j]
    target = targets[row, t]
    none = (items < 0) | (target < 0) | (items == target)
    return positions, items.masked_fill(none, -1)


def read_unlikelihood(logits: list[Tensor], codes: Tensor, read: Tensor) -> Tensor:
    """A SID model's term: the mean of -log(1 - p(read item | h_t)) over the sampled
    positions that have a read item (`sample_read_items`).

    logits: one [k x K_l] per level, teacher-forced along each read item's SID
    (trie-masked where the model's softmax is); codes: [k x L'] those SIDs; read: [k]
    the items, -1 = none. p(item) = the product of the level softmaxes at its codes,
    as SID-GPT's `log_prob`.
    """
    keep = read >= 0
    log_p = sum(
        lg.float().log_softmax(-1).gather(-1, codes[:, level, None])[:, 0]
        for level, lg in enumerate(logits)
    )
    return (not_again(log_p) * keep).sum() / keep.sum().clamp(min=1)
