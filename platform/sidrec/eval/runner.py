"""Evaluate any full-catalog scorer over a split with the one protocol of docs/ARCHITECTURE.md.

Both rankings are computed in one pass and always labelled: the primary one
ranks the whole catalog (TIGER / HiD-VAE protocol); `exclude_seen/...` removes
each user's history items first (RecBole's default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from sidrec.data.catalog import SplitData
from sidrec.eval.metrics import (
    DEFAULT_KS,
    EXCLUDE_SEEN_PREFIX,
    RankingEvaluator,
    history_mask,
    target_ranks,
)
from sidrec.progress import Progress

__all__ = ["evaluate_scorer", "format_table", "DEFAULT_KS"]

ScoreFn = Callable[[list[np.ndarray]], torch.Tensor]


def evaluate_scorer(
    score: ScoreFn,
    split: SplitData,
    num_items: int,
    head_mask: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """`score(histories) -> [b x N]` for a batch of histories; returns the metrics of
    both protocols, the exclude_seen ones under the `exclude_seen/` prefix."""
    plain = RankingEvaluator(num_items, ks=ks, head_mask=head_mask)
    unseen = RankingEvaluator(num_items, ks=ks, head_mask=head_mask)
    progress = Progress("evaluation", len(split), "users")
    for start in range(0, len(split), batch_size):
        progress.update(min(batch_size, len(split) - start))
        histories = split.histories(start, start + batch_size)
        targets = torch.as_tensor(split.targets[start : start + batch_size], dtype=torch.long)
        scores = score(histories)
        plain.add(target_ranks(scores, targets), targets)
        seen = history_mask(histories, num_items)
        unseen.add(target_ranks(scores, targets, exclude=seen), targets)
    progress.close()
    metrics = dict(plain.compute())
    metrics.update({f"{EXCLUDE_SEEN_PREFIX}{k}": v for k, v in unseen.compute().items()})
    return metrics


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"),
) -> str:
    """A plain-text table, one row per (name -> metrics)."""
    width = max([len(n) for n in rows] + [10])
    header = f"{'':{width}}  " + "  ".join(f"{c:>10}" for c in columns)
    lines = [header]
    for name, metrics in rows.items():
        cells = "  ".join(f"{metrics[c]:>10.4f}" if c in metrics else f"{'-':>10}" for c in columns)
        lines.append(f"{name:{width}}  {cells}")
    return "\n".join(lines)
