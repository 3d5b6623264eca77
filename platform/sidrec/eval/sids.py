"""Semantic-ID table metrics: collisions and codebook usage.

codes: [N x L] (ndarray or LongTensor), row i the SID of item i. Pass the
codes *before* any disambiguation level (docs/ARCHITECTURE.md: collision rate is
measured before disambiguation); with it appended the collision rate is 0 by
construction. Rows are packed into one integer each and grouped with
`torch.unique` (a sort), never compared pairwise: a million-item table costs
O(N log N).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def _as_codes(codes: Tensor | np.ndarray) -> Tensor:
    t = torch.as_tensor(codes)
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"codes: expected a non-empty [N x L] table, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"codes: expected integer codes, got dtype {t.dtype}")
    return t.long()


def _sizes(codes: Tensor, codebook_size: int | Sequence[int]) -> list[int]:
    """One codebook size per level; raise if a code falls outside its codebook."""
    levels = codes.shape[1]
    sizes = [codebook_size] * levels if isinstance(codebook_size, int) else list(codebook_size)
    if len(sizes) != levels:
        raise ValueError(
            f"codebook_size: expected an int or {levels} sizes (one per level), got {len(sizes)}"
        )
    for level, k in enumerate(sizes):
        col = codes[:, level]
        if int(col.min()) < 0 or int(col.max()) >= k:
            raise ValueError(
                f"codes: level {level} holds codes {int(col.min())}..{int(col.max())}, "
                f"outside its codebook [0, {k}) (codebook_size)"
            )
    return sizes


def _row_keys(codes: Tensor) -> Tensor:
    """[N] int64, equal exactly when two code rows are equal."""
    # Mixed-radix packing turns each row into one integer, so a 1-D unique
    # (~100x faster than torch.unique(dim=0) on the CPU) finds equal rows.
    shifted = codes - codes.min(0).values
    radices = (shifted.max(0).values + 1).tolist()
    if math.prod(radices) >= 2**62:  # would overflow int64: sort the rows instead
        return torch.unique(codes, dim=0, return_inverse=True)[1]
    keys = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
    for level, radix in enumerate(radices):
        keys = keys * radix + shifted[:, level]
    return keys


def _sid_group_sizes(codes: Tensor) -> Tensor:
    """[N]: how many items share each item's full code row (1 = unique)."""
    _, inverse, counts = torch.unique(_row_keys(codes), return_inverse=True, return_counts=True)
    return counts[inverse]


def collision_rate(codes: Tensor | np.ndarray) -> float:
    """Share of items whose SID is shared with at least one other item.

    Counts items, not SIDs: 3 items on one SID + 1 unique item -> 3/4.
    """
    return float((_sid_group_sizes(_as_codes(codes)) > 1).double().mean())


def max_items_per_sid(codes: Tensor | np.ndarray) -> int:
    """The largest number of items that share one SID (1 = collision-free)."""
    return int(_sid_group_sizes(_as_codes(codes)).max())


def prefix_collision_rates(codes: Tensor | np.ndarray) -> list[float]:
    """[L] values: entry l-1 is the share of items sharing their first l codes with another item."""
    codes = _as_codes(codes)
    return [collision_rate(codes[:, :length]) for length in range(1, codes.shape[1] + 1)]


def codebook_utilization(
    codes: Tensor | np.ndarray, codebook_size: int | Sequence[int]
) -> list[float]:
    """Per level: distinct codes used / codebook size K."""
    codes = _as_codes(codes)
    sizes = _sizes(codes, codebook_size)
    return [torch.unique(codes[:, level]).numel() / k for level, k in enumerate(sizes)]


def codebook_perplexity(
    codes: Tensor | np.ndarray, codebook_size: int | Sequence[int]
) -> list[float]:
    """Per level: exp(entropy) of the code usage distribution, in [1, K].

    K means every code is used equally often; 1 means one code takes every item.
    """
    codes = _as_codes(codes)
    sizes = _sizes(codes, codebook_size)
    out = []
    for level, k in enumerate(sizes):
        p = torch.bincount(codes[:, level], minlength=k).double() / codes.shape[0]
        p = p[p > 0]
        out.append(math.exp(float(-(p * p.log()).sum())))
    return out


def sid_table_metrics(
    codes: Tensor | np.ndarray, codebook_size: int | Sequence[int]
) -> dict[str, float]:
    """Every SID table metric under stable keys, ready for MLflow.

    Keys: `num_items`, `num_sids` (distinct code rows), `collision_rate`,
    `max_items_per_sid`, `prefix_collision/length_{l}` for l in 1..L,
    `utilization/level_{i}` and `perplexity/level_{i}` for i in 0..L-1.
    """
    codes = _as_codes(codes)
    group_sizes = _sid_group_sizes(codes)
    out: dict[str, float] = {
        "num_items": codes.shape[0],
        "num_sids": int(torch.unique(_row_keys(codes)).numel()),
        "collision_rate": float((group_sizes > 1).double().mean()),
        "max_items_per_sid": int(group_sizes.max()),
    }
    for length, rate in enumerate(prefix_collision_rates(codes), start=1):
        out[f"prefix_collision/length_{length}"] = rate
    for level, value in enumerate(codebook_utilization(codes, codebook_size)):
        out[f"utilization/level_{level}"] = value
    for level, value in enumerate(codebook_perplexity(codes, codebook_size)):
        out[f"perplexity/level_{level}"] = value
    return out
