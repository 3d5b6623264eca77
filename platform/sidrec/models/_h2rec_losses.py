"""H2Rec's two alignment losses (arXiv 2512.10388, §4.2, Eq. 7 and Eq. 8) and the
positive sets they use. Plain tensor functions, unit-tested on hand-made cases.

- Code-guided alignment (Eq. 7): an item's SID representation is pulled to
  the HID representation of itself *and* of its code- or behaviour-related
  items: those sharing >= t code levels, and those that occur within w
  positions of it in some user's training sequence. Multi-positive InfoNCE,
  SID -> HID and HID -> SID, averaged.
- Masked sequence granularity (Eq. 8): one randomly chosen code level is
  masked out of the SID sequence; the user representation from the masked
  view is contrasted with the global (unmasked) one, the other users of the
  batch being the negatives, both directions averaged.

Details the issue text leaves open and this module fixes: similarities are
cosines over a temperature tau; the multi-positive form puts the positives'
sum inside the log (-log sum_pos / sum_all), so a positive set of one is
plain InfoNCE; "sharing t levels" counts positions l with equal codes
(c_i^l == c_j^l), not only prefixes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "alignment_positives",
    "code_alignment_loss",
    "cooccurrence_keys",
    "granularity_loss",
    "multi_positive_info_nce",
]


def multi_positive_info_nce(queries: Tensor, keys: Tensor, positives: Tensor, tau: float) -> Tensor:
    """mean_i -log( sum_{j in P(i)} e^{cos(q_i, k_j)/tau} / sum_j e^{cos(q_i, k_j)/tau} ).

    queries, keys: [B x d]; positives: [B x B] bool, P(i) = positives[i]
    (every row needs at least one True).
    """
    if positives.shape != (queries.shape[0], keys.shape[0]):
        raise ValueError(
            f"positives: expected [{queries.shape[0]} x {keys.shape[0]}], got {tuple(positives.shape)}"
        )
    logits = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T / tau
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    return (log_all - log_pos).mean()


def code_alignment_loss(sid: Tensor, hid: Tensor, positives: Tensor, tau: float) -> Tensor:
    """H2Rec Eq. 7: SID <-> HID item alignment over a batch of B items.

    sid, hid: [B x d] the two representations of the same B items (row i = item i);
    positives: [B x B] bool, symmetric, True on the diagonal (`alignment_positives`).
    """
    s2h = multi_positive_info_nce(sid, hid, positives, tau)
    h2s = multi_positive_info_nce(hid, sid, positives.T, tau)
    return 0.5 * (s2h + h2s)


def granularity_loss(global_view: Tensor, masked_view: Tensor, tau: float) -> Tensor:
    """H2Rec Eq. 8: user i's global and level-masked SID representations are the
    positive pair, the other users of the batch the negatives; both directions.

    global_view, masked_view: [B x d] (row i = user i).
    """
    eye = torch.eye(global_view.shape[0], dtype=torch.bool, device=global_view.device)
    g2m = multi_positive_info_nce(global_view, masked_view, eye, tau)
    m2g = multi_positive_info_nce(masked_view, global_view, eye, tau)
    return 0.5 * (g2m + m2g)


def cooccurrence_keys(
    items: np.ndarray, offsets: np.ndarray, window: int, num_items: int
) -> np.ndarray:
    """Sorted unique keys i * N + j of the item pairs (i != j) that occur within
    `window` positions of each other in some sequence, both orders.

    items: all sequences concatenated; offsets: [U + 1] sequence bounds
    (`sidrec.data.ingest.Sequences`). window 0: no pairs.
    """
    items = np.asarray(items, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    user_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    keys = []
    for lag in range(1, window + 1):
        same = user_of[lag:] == user_of[:-lag]  # pairs (p, p + lag) inside one sequence
        a, b = items[:-lag][same], items[lag:][same]
        keep = a != b
        a, b = a[keep], b[keep]
        keys += [a * num_items + b, b * num_items + a]
    if not keys:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(keys))


def alignment_positives(
    items: Tensor, codes: Tensor, threshold: int, cooc_keys: Tensor | None, num_items: int
) -> Tensor:
    """The positive sets of Eq. 7 over a batch of distinct items: [B x B] bool.

    items: [B]; codes: [N x L] every item's SID; threshold: t, the levels two
    items must share; cooc_keys: sorted keys from `cooccurrence_keys` (None or
    empty: no behavioural positives). Always True on the diagonal.
    """
    c = codes[items]  # [B x L]
    shared = (c[:, None, :] == c[None, :, :]).sum(-1)  # [B x B] levels in common
    positive = shared >= threshold
    if cooc_keys is not None and cooc_keys.numel():
        pair = items[:, None] * num_items + items[None, :]  # [B x B]
        where = torch.searchsorted(cooc_keys, pair.flatten()).clamp(max=cooc_keys.numel() - 1)
        positive |= (cooc_keys[where] == pair.flatten()).view_as(pair)
    return positive | torch.eye(len(items), dtype=torch.bool, device=items.device)
