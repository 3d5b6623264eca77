"""Ranked lists from a generative model under the `exclude_seen` protocol."""

from __future__ import annotations

import torch
from torch import Tensor


def drop_seen(
    topk: Tensor, seen: Tensor, scores: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Remove seen items from ranked lists, moving the rest up in order.

    topk: [b x K] item ids, best first (-1 padding); seen: [b x N] bool;
    scores: optional [b x K], reordered alike (-inf on the new padding).
    Returns ([b x K] ids with -1 padding at the end, scores or None).

    A seen target is then not found, and every unseen item after a seen one
    gains a rank, which is what ranking the catalog without the seen items
    gives (sidrec.eval's `exclude_seen/`), up to the K decoded candidates.
    """
    return drop_flagged(topk, seen.gather(1, topk.clamp(min=0)), scores)


def drop_flagged(
    topk: Tensor, flagged: Tensor, scores: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """`drop_seen` with the flags already gathered: flagged [b x K] bool, True where
    topk's item is seen. Lets a caller flag K candidates without a [b x N] mask."""
    drop = (topk < 0) | flagged
    order = torch.sort(drop.to(torch.int8), dim=1, stable=True).indices  # kept first, in order
    dropped = drop.gather(1, order)
    items = topk.gather(1, order).masked_fill(dropped, -1)
    if scores is None:
        return items, None
    return items, scores.gather(1, order).masked_fill(dropped, float("-inf"))
