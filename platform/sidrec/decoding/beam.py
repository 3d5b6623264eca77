"""Batched, trie-constrained beam search over semantic IDs.

One loop over the L code levels, nothing else: at each level the decoder
scores every (batch row, beam) at once, one gathered mask removes the codes
the trie disallows, and one top-k over beam x K_l per batch row picks the
next beams (TIGER, Rajput et al. 2023, §3.2; HiD-VAE App. C.2 ranks by the
same beam search, beam 20). Invalid SIDs are impossible by construction: a
disallowed code scores -inf and a beam that holds one is dead (-inf, node
-1) and never becomes an item.

Row layout (what a decoder may rely on): at level t there are w_t beams per
batch row (w_0 = 1, then min(beam_width, w_{t-1} * K_{t-1})), rows are
batch-major (row r belongs to batch row r // w_t), and `reorder` indices never
move a row to another batch row. A decoder can therefore keep per-user
tensors (encoder memory) at [b x ...] and never copy them per beam.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from sidrec.decoding.trie import SidTrie


class DecoderStep(Protocol):
    """A model's incremental decoder, as the beam search drives it.

    `state` is opaque to the search (a KV cache, encoder memory, ...); the
    model builds the initial one for b batch rows (e.g. by encoding user
    histories) and the search passes it in.
    """

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Scores for the next code.

        tokens: [rows x t] long, the codes chosen so far (t = the level being
            decoded; [rows x 0] at the first step, where the model feeds its
            BOS). A cached model reads only tokens[:, -1].
        state: the state for these rows (rows = b at t=0, b*w_t later).
        Returns logits [rows x K_t] (any float dtype) and the new state. Do not
        modify `state` in place (the reference search reuses it across siblings).
        """
        ...

    def reorder(self, state: Any, index: Tensor) -> Any:
        """The state whose row i is row index[i] of state; index: [rows'] long.

        Used both to select beams (parents) and to expand b rows to b*w at the
        first step, so rows' may exceed the current row count.
        """
        ...


class BeamResult(NamedTuple):
    """Top-k decoded items per batch row, best first (unpacks as a triple).

    items: [b x topk] long item ids, -1 where fewer valid items exist (or, with
        constrained=False, where the decoded SID is not in the catalog).
    scores: [b x topk] float32 sum of per-level log-probs; -inf on padding.
    sids: [b x topk x L] long decoded codes; -1 on padding.
    """

    items: Tensor
    scores: Tensor
    sids: Tensor


@torch.no_grad()
def constrained_beam_search(
    decoder: DecoderStep,
    batch_size: int,
    trie: SidTrie,
    beam_width: int,
    topk: int,
    *,
    state: Any = None,
    renormalize: bool = False,
    constrained: bool = True,
) -> BeamResult:
    """Decode the top-k valid items for each of batch_size rows.

    state: the decoder's initial state for [batch_size] rows.
    beam_width: beams kept per row; the result is exact (equals scoring every
        item) when beam_width >= the number of items, approximate below.
    topk: items returned per row, <= beam_width.
    renormalize: False (default) scores an item by the model's own joint
        log-probability, sum_l log p(c_l | c_<l) with the softmax over the full
        codebook, as TIGER / HiD-VAE train and rank. It is the likelihood the
        model was trained to maximize and is comparable across items and
        models. True takes the softmax over the allowed codes only: every level
        then sums to 1 over the catalog, which inflates items under prefixes
        with few children (a sole child gets log-prob 0 whatever the model
        thinks of it), changing the ranking; offered for experiments.
    constrained: False drops the mask (same loop, for measuring its cost and
        the invalid-SID rate); items are then -1 where the SID does not exist.
    """
    _check_args(batch_size, trie, beam_width, topk, renormalize, constrained)
    device = trie.device
    b = batch_size
    scores = torch.zeros(b, device=device)  # [b*w] log-prob of each beam's prefix
    tokens = torch.zeros(b, 0, dtype=torch.long, device=device)  # [b*w x t]
    nodes = torch.zeros(b, dtype=torch.long, device=device)  # [b*w] trie node, -1 dead/invalid
    for level, k in enumerate(trie.codebook_sizes):
        logits, state = decoder.step(tokens, state)
        _check_logits(logits, tokens.shape[0], k, level)
        logp = _log_probs(logits, trie, level, nodes, renormalize, constrained)
        top, parent, codes = _select(scores, logp, b, beam_width)  # [b x w'] each
        w = scores.shape[0] // b
        index = (torch.arange(b, device=device)[:, None] * w + parent).reshape(-1)  # [b*w']
        scores = top.reshape(-1)
        tokens = torch.cat([tokens[index], codes.reshape(-1, 1)], 1)
        nodes = trie.child(level, nodes[index], codes.reshape(-1))
        nodes = torch.where(torch.isfinite(scores), nodes, -1)  # dead beams lead nowhere
        if level + 1 < trie.num_levels:  # the last step's state is never read again
            state = decoder.reorder(state, index)
    return _finish(scores, tokens, nodes, trie, b, topk, constrained)


def _log_probs(
    logits: Tensor, trie: SidTrie, level: int, nodes: Tensor, renormalize: bool, constrained: bool
) -> Tensor:
    """[rows x K] log-probs of the next code, -inf where the trie disallows it."""
    # float32 whatever the model's dtype: bf16 sums of log-probs would tie distinct items.
    logits = logits.float()
    if not constrained:
        return logits.log_softmax(-1)
    allowed = trie.allowed_mask(level, nodes)  # [rows x K], one gather
    if renormalize:  # a dead beam's row becomes NaN here and -inf below
        logits = torch.where(allowed, logits, float("-inf"))
    # NaN logits from a broken model stay NaN: top-k may pick them, but a NaN
    # beam is dead (not finite) like a -inf one and never becomes an item.
    return torch.where(allowed, logits.log_softmax(-1), float("-inf"))


def _select(scores: Tensor, logp: Tensor, b: int, beam_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top beams over (beam x code) per batch row.

    scores: [b*w] prefix log-probs; logp: [b*w x K].
    Returns top scores, parent beam (0..w-1) and code, each [b x min(beam_width, w*K)],
    sorted best first.
    """
    k = logp.shape[1]
    cand = (scores[:, None] + logp).reshape(b, -1)  # [b x w*K]
    top, flat = cand.topk(min(beam_width, cand.shape[1]), dim=1)
    return top, flat // k, flat % k


def _finish(
    scores: Tensor,
    tokens: Tensor,
    nodes: Tensor,
    trie: SidTrie,
    b: int,
    topk: int,
    constrained: bool,
) -> BeamResult:
    """Map leaf nodes to items; keep the best topk beams per row; pad with -1/-inf."""
    w = scores.shape[0] // b
    items = trie.items(nodes).reshape(b, w)
    scores = scores.reshape(b, w)
    sids = tokens.reshape(b, w, -1)
    dead = ~torch.isfinite(scores)
    items = items.masked_fill(dead, -1)
    if constrained:  # a dead beam carries whatever code top-k drew from -inf: hide it
        sids = sids.masked_fill(dead[..., None], -1)
    scores = scores.masked_fill(dead, float("-inf"))
    keep = min(topk, w)
    items, scores, sids = items[:, :keep], scores[:, :keep], sids[:, :keep]
    if keep < topk:
        pad = topk - keep
        items = torch.cat([items, items.new_full((b, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((b, pad), float("-inf"))], 1)
        sids = torch.cat([sids, sids.new_full((b, pad, sids.shape[2]), -1)], 1)
    return BeamResult(items, scores, sids)


def _check_args(
    batch_size: int, trie: SidTrie, beam_width: int, topk: int, renormalize: bool, constrained: bool
) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if beam_width < 1:
        raise ValueError(f"beam_width: expected >= 1, got {beam_width}")
    if not 1 <= topk <= beam_width:
        raise ValueError(
            f"topk: expected 1..beam_width ({beam_width}), got {topk}; raise beam_width"
        )
    if renormalize and not constrained:
        raise ValueError(
            "renormalize=True needs constrained=True (it renormalizes over the allowed codes)"
        )
    if not isinstance(trie, SidTrie):
        raise TypeError(f"trie: expected a SidTrie, got {type(trie).__name__}")


def _check_logits(logits: Tensor, rows: int, k: int, level: int) -> None:
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] != k:
        raise ValueError(
            f"decoder.step at level {level}: expected logits [{rows} x {k}] "
            f"(rows x codebook size K_{level}), got {tuple(logits.shape)}"
        )
