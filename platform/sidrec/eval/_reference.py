"""Slow, obvious implementations of `sidrec.eval`, for property tests only.

Each mirrors a vectorized function with Python loops and `sorted()`, so that
a reader can check the definition by eye. Never call these from a job.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor


def _rank_in(candidates: list[int], row: list[float], target: int) -> int:
    # The tie rule itself: stable sort by descending score, then ascending id.
    order = sorted(candidates, key=lambda i: (-row[i], i))
    return order.index(target)


def target_ranks(scores: Tensor, targets: Tensor, exclude: Tensor | None = None) -> Tensor:
    n = scores.shape[1]
    ranks = []
    for u, (row, target) in enumerate(zip(scores.tolist(), targets.tolist(), strict=True)):
        seen = set() if exclude is None else {i for i in range(n) if exclude[u, i]}
        if target in seen:
            ranks.append(n)  # an excluded target is not found
            continue
        ranks.append(_rank_in([i for i in range(n) if i not in seen], row, target))
    return torch.tensor(ranks, dtype=torch.long)


def sampled_target_ranks(
    scores: Tensor, targets: Tensor, negatives: Tensor, exclude: Tensor | None = None
) -> Tensor:
    ranks = []
    for u, (row, target, negs) in enumerate(
        zip(scores.tolist(), targets.tolist(), negatives.tolist(), strict=True)
    ):
        if exclude is not None and exclude[u, target]:
            ranks.append(len(negs) + 1)  # not found: one past the n + 1 candidates
            continue
        ranks.append(_rank_in([target, *negs], row, target))
    return torch.tensor(ranks, dtype=torch.long)


def ranks_from_topk(topk: Tensor, targets: Tensor) -> Tensor:
    ranks = []
    for row, target in zip(topk.tolist(), targets.tolist(), strict=True):
        ranks.append(row.index(target) if target in row else len(row))
    return torch.tensor(ranks, dtype=torch.long)


def history_mask(histories: Sequence[Sequence[int]], num_items: int) -> Tensor:
    mask = torch.zeros(len(histories), num_items, dtype=torch.bool)
    for u, history in enumerate(histories):
        for item in history:
            if item != -1:
                mask[u, item] = True
    return mask


def metrics_from_ranks(
    ranks: Tensor, ks: Sequence[int], prefix: str = "", not_found: int | None = None
) -> dict[str, float]:
    ranks = ranks.tolist()
    found = [r for r in ranks if not_found is None or r != not_found]
    out: dict[str, float] = {}
    for k in ks:
        out[f"{prefix}recall@{k}"] = sum(1.0 for r in found if r < k) / len(ranks)
    for k in ks:
        out[f"{prefix}ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in found if r < k) / len(ranks)
    out[f"{prefix}count"] = len(ranks)
    return out


def head_items(train_item_counts: Tensor, head_fraction: float) -> Tensor:
    counts = train_item_counts.tolist()
    n = len(counts)
    num_head = min(n, math.ceil(head_fraction * n - 1e-9))  # same rounding rule as metrics
    by_popularity = sorted(range(n), key=lambda i: (-counts[i], i))
    mask = torch.zeros(n, dtype=torch.bool)
    for i in by_popularity[:num_head]:
        mask[i] = counts[i] > 0
    return mask


def collision_rate(codes) -> float:
    rows = [tuple(row) for row in torch.as_tensor(codes).tolist()]
    items_per_sid = Counter(rows)
    return sum(1 for row in rows if items_per_sid[row] > 1) / len(rows)


def max_items_per_sid(codes) -> int:
    return max(Counter(tuple(row) for row in torch.as_tensor(codes).tolist()).values())


def codebook_utilization(codes, codebook_size: int | Sequence[int]) -> list[float]:
    rows = torch.as_tensor(codes).tolist()
    levels = len(rows[0])
    sizes = [codebook_size] * levels if isinstance(codebook_size, int) else list(codebook_size)
    return [len({row[level] for row in rows}) / sizes[level] for level in range(levels)]


def codebook_perplexity(codes, codebook_size: int | Sequence[int]) -> list[float]:
    rows = torch.as_tensor(codes).tolist()
    out = []
    for level in range(len(rows[0])):
        usage = Counter(row[level] for row in rows)
        entropy = -sum(c / len(rows) * math.log(c / len(rows)) for c in usage.values())
        out.append(math.exp(entropy))
    return out
