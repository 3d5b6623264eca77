"""Ranking metrics: the one definition used by every model and every job.

Protocol (docs/ARCHITECTURE.md "Evaluation"): leave-one-out, one target item per user,
ranked against the full catalog of N items (dense ids 0..N-1). Ranks are
0-based; Recall@K is a hit (rank < K) and NDCG@K with one relevant item is
1 / log2(rank + 2) when rank < K, else 0.

Tie rule. Every rank is the position the target takes in a *stable sort by
descending score, then ascending item id*:

    rank = #(score > s_t) + #(score == s_t and id < target)

so a result never depends on the order in which a kernel visits items. (A
model that scores every item equal therefore ranks its target at its own id.)

Not found. A target outside the ranking gets rank = the number of candidates
that were ranked: N from `target_ranks` (target excluded), num_negatives + 1
from `sampled_target_ranks`, K from `ranks_from_topk`. Pass that number as
`not_found=` to the metric functions (`RankingEvaluator` defaults it to N), so
that it counts as a miss even at a cutoff above it (K=20 over a 10-item
catalog, a 10-wide beam).

Protocols and their metric names (never mix them in one comparison):
- primary: full catalog, history items kept in the ranking (TIGER / HiD-VAE).
  No prefix: `recall@10`.
- `exclude_seen/`: the user's history items are removed from the ranking
  (RecBole's default); pass `exclude=history_mask(...)`. If the target itself
  is in the history it counts as not found (rank = N), as in RecBole, and so
  as a miss.
- `sampled{n}/`: the target ranked among n negatives drawn uniformly
  (`sampled_target_ranks`); an explicitly named option, never the default.

Head/tail: `head_items` marks the ceil(head_fraction * N) items with the most
training interactions (ties to the lower id; items never seen in training are
always tail), and `grouped_metrics` / `RankingEvaluator` split every metric
by whether the *target* is a head item: `head/recall@10`, `tail/count`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
EXCLUDE_SEEN_PREFIX = "exclude_seen/"


def sampled_prefix(num_negatives: int) -> str:
    """The metric-name prefix of the sampled protocol: `sampled100/`."""
    return f"sampled{num_negatives}/"


# ----------------------------------------------------------------------------
# argument checks: every message names the argument at fault
# ----------------------------------------------------------------------------


def _shape(t: Tensor) -> str:
    return "[" + " x ".join(str(d) for d in t.shape) + "]"


def _is_int(t: Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def _check_ids(name: str, ids: Tensor, num_items: int, allow_pad: bool = False) -> None:
    """Raise unless every id lies in [0, num_items) (or is -1 padding when allowed)."""
    if not _is_int(ids):
        raise ValueError(f"{name}: expected integer item ids, got dtype {ids.dtype}")
    if ids.numel() == 0:
        return
    low = -1 if allow_pad else 0
    if bool(((ids < low) | (ids >= num_items)).any()):
        pad = " (or -1 padding)" if allow_pad else ""
        raise ValueError(
            f"{name}: item ids must lie in [0, {num_items}){pad}, "
            f"got values from {int(ids.min())} to {int(ids.max())}"
        )


def _check_scores(
    scores: Tensor, targets: Tensor, exclude: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Validate a scored batch; return targets and exclude on the scores' device."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        shape = _shape(scores) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores: expected a tensor [b x N], got {shape}")
    b, n = scores.shape
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.shape[0] != b:
        shape = _shape(targets) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"targets: expected shape [b] = [{b}] to match scores {_shape(scores)}, got {shape}"
        )
    _check_ids("targets", targets, n)
    if exclude is not None:
        if not isinstance(exclude, Tensor) or exclude.shape != scores.shape:
            shape = _shape(exclude) if isinstance(exclude, Tensor) else type(exclude).__name__
            raise ValueError(
                f"exclude: expected a bool mask {_shape(scores)} like scores, got {shape}"
            )
        if exclude.dtype != torch.bool:
            raise ValueError(f"exclude: expected dtype torch.bool, got {exclude.dtype}")
        exclude = exclude.to(scores.device)
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        rows = torch.isnan(scores).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"scores: contains NaN (rows {rows}...); a ranking over NaN is undefined")
    return targets.to(scores.device, torch.long), exclude


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks: expected a non-empty sequence of positive ints, got {ks}")
    return ks


def _check_ranks(ranks: Tensor, max_rank: int | None = None) -> None:
    if not isinstance(ranks, Tensor) or ranks.dim() != 1:
        shape = _shape(ranks) if isinstance(ranks, Tensor) else type(ranks).__name__
        raise ValueError(f"ranks: expected a 1-D tensor [b], got {shape}")
    if not _is_int(ranks):
        raise ValueError(f"ranks: expected integer ranks, got dtype {ranks.dtype}")
    if ranks.numel() and int(ranks.min()) < 0:
        raise ValueError(f"ranks: must be >= 0, got {int(ranks.min())}")
    if max_rank is not None and ranks.numel() and int(ranks.max()) > max_rank:
        raise ValueError(f"ranks: must be <= {max_rank} (not_found), got {int(ranks.max())}")


# ----------------------------------------------------------------------------
# ranks
# ----------------------------------------------------------------------------


def target_ranks(scores: Tensor, targets: Tensor, exclude: Tensor | None = None) -> Tensor:
    """0-based rank of each target among all N items, under the stable tie rule.

    scores: [b x N] (higher is better; +-inf allowed, NaN raises ValueError).
    targets: [b] item ids in [0, N).
    exclude: optional bool [b x N]; True items are removed from the ranking
        (the `exclude_seen` protocol). A target that is itself excluded counts
        as not found: rank N (RecBole's semantics).
    Returns LongTensor [b] on scores' device, values in [0, N]. Memory O(b * N).
    """
    targets, exclude = _check_scores(scores, targets, exclude)
    n = scores.shape[1]
    t = targets[:, None]
    s_t = scores.gather(1, t)
    ids = torch.arange(n, device=scores.device)
    ahead = (scores > s_t) | ((scores == s_t) & (ids < t))
    if exclude is None:
        return ahead.sum(1)
    ranks = (ahead & ~exclude).sum(1)
    return ranks.masked_fill(exclude.gather(1, t).squeeze(1), n)


def ranks_from_topk(topk: Tensor, targets: Tensor) -> Tensor:
    """0-based position of each target in its ranked list, K if absent.

    For generative models that return ranked item lists (beam search).
    topk: [b x K] item ids, best first; -1 padding allowed (never matches).
        If an item repeats, its first position counts.
    targets: [b] item ids (>= 0).
    Returns LongTensor [b] in [0, K]; K means not found: pass `not_found=K`
    to the metrics. Decode with K >= the largest cutoff, or Recall@cutoff
    only counts the top K.
    """
    if not isinstance(topk, Tensor) or topk.dim() != 2:
        shape = _shape(topk) if isinstance(topk, Tensor) else type(topk).__name__
        raise ValueError(f"topk: expected a tensor [b x K], got {shape}")
    if not _is_int(topk):
        raise ValueError(f"topk: expected integer item ids, got dtype {topk.dtype}")
    b, k = topk.shape
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.shape[0] != b:
        shape = _shape(targets) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"targets: expected shape [b] = [{b}] to match topk {_shape(topk)}, got {shape}"
        )
    _check_ids("targets", targets, num_items=torch.iinfo(torch.long).max)
    targets = targets.to(topk.device, torch.long)
    if k == 0:
        return torch.zeros(b, dtype=torch.long, device=topk.device)
    match = topk == targets[:, None]
    # argmax returns the first maximal index, i.e. the first occurrence.
    first = match.to(torch.int8).argmax(1)
    return torch.where(match.any(1), first, torch.full_like(first, k))


def history_mask(
    histories: Sequence[Sequence[int]] | Tensor,
    num_items: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bool mask [b x N] of the items in each user's history, for `exclude=`.

    histories: b id sequences (lists or 1-D arrays), or a padded LongTensor
        [b x s]; -1 is padding in either form and is skipped.
    """
    if isinstance(histories, Tensor):
        if histories.dim() != 2:
            raise ValueError(
                f"histories: expected a padded tensor [b x s], got {_shape(histories)}"
            )
        _check_ids("histories", histories, num_items, allow_pad=True)
        b, s = histories.shape
        device = histories.device if device is None else device
        rows = torch.arange(b, device=histories.device).repeat_interleave(s)
        items = histories.reshape(-1).long()
    else:
        b = len(histories)
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)
        rows = torch.arange(b).repeat_interleave(lengths)
        # np.concatenate: fast for both lists of ints and lists of arrays.
        flat = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        items = torch.from_numpy(np.concatenate(flat) if flat else np.zeros(0, np.int64))
        _check_ids("histories", items, num_items, allow_pad=True)
    keep = items >= 0
    mask = torch.zeros(b, num_items, dtype=torch.bool, device=device)
    mask[rows[keep].to(mask.device), items[keep].to(mask.device)] = True
    return mask


# ----------------------------------------------------------------------------
# sampled protocol (named option, never the default)
# ----------------------------------------------------------------------------


def draw_negatives(
    targets: Tensor,
    num_items: int,
    num_negatives: int = 100,
    generator: torch.Generator | None = None,
    exclude: Tensor | None = None,
) -> Tensor:
    """Draw negatives per user, uniformly without replacement.

    Candidates are the items != target and not excluded. The n smallest of
    i.i.d. uniform keys are a uniform n-subset; keys are drawn on the
    generator's device (so a CPU generator gives the same draw on any device).
    targets: [b]; exclude: optional bool [b x N].
    Returns LongTensor [b x num_negatives] on targets' device, in random order.
    Raises ValueError if a user has fewer than num_negatives candidates.
    """
    if not isinstance(targets, Tensor) or targets.dim() != 1:
        raise ValueError(
            f"targets: expected a 1-D tensor [b], got {getattr(targets, 'shape', targets)}"
        )
    _check_ids("targets", targets, num_items)
    b = targets.shape[0]
    key_device = generator.device if generator is not None else targets.device
    allowed = torch.ones(b, num_items, dtype=torch.bool, device=key_device)
    if exclude is not None:
        if exclude.shape != (b, num_items) or exclude.dtype != torch.bool:
            raise ValueError(
                f"exclude: expected bool [{b} x {num_items}], got {exclude.dtype} {_shape(exclude)}"
            )
        allowed &= ~exclude.to(key_device)
    t = targets.to(key_device, torch.long)
    allowed[torch.arange(b, device=key_device), t] = False
    short = allowed.sum(1) < num_negatives
    if bool(short.any()):
        row = int(short.nonzero()[0])
        raise ValueError(
            f"num_negatives: row {row} has only {int(allowed[row].sum())} candidate items "
            f"(not the target, not excluded), fewer than num_negatives={num_negatives}"
        )
    keys = torch.rand(b, num_items, generator=generator, device=key_device)
    keys = keys.masked_fill(~allowed, 2.0)  # rand is in [0, 1): 2.0 sorts after every candidate
    return keys.topk(num_negatives, dim=1, largest=False).indices.to(targets.device)


def sampled_target_ranks(
    scores: Tensor,
    targets: Tensor,
    num_negatives: int = 100,
    generator: torch.Generator | None = None,
    exclude: Tensor | None = None,
    *,
    negatives: Tensor | None = None,
) -> Tensor:
    """0-based rank of each target among itself + num_negatives sampled items.

    The sampled protocol: name its metrics `metrics_from_ranks(...,
    prefix=sampled_prefix(num_negatives))`. Same tie rule as `target_ranks`.
    scores: [b x N]; targets: [b]; exclude: optional bool [b x N] (never drawn;
        an excluded target is not found: rank num_negatives + 1).
    negatives: optional [b x num_negatives] ids drawn beforehand (e.g. by
        `draw_negatives`, to compare against the reference); else drawn here.
    Returns LongTensor [b] in [0, num_negatives + 1]; pass
    `not_found=num_negatives + 1` to the metrics.
    """
    targets, exclude = _check_scores(scores, targets, exclude)
    b, n = scores.shape
    if negatives is None:
        negatives = draw_negatives(targets, n, num_negatives, generator, exclude)
    elif negatives.dim() != 2 or negatives.shape != (b, num_negatives):
        raise ValueError(
            f"negatives: expected [{b} x {num_negatives}] (b x num_negatives), got {_shape(negatives)}"
        )
    _check_ids("negatives", negatives, n)
    negatives = negatives.to(scores.device, torch.long)
    t = targets[:, None]
    if bool((negatives == t).any()):
        raise ValueError("negatives: a row contains its own target")
    s_t = scores.gather(1, t)
    s_neg = scores.gather(1, negatives)
    ranks = ((s_neg > s_t) | ((s_neg == s_t) & (negatives < t))).sum(1)
    if exclude is None:
        return ranks
    # num_negatives is a real rank here (target last of n + 1): not found is one past it.
    return ranks.masked_fill(exclude.gather(1, t).squeeze(1), num_negatives + 1)


# ----------------------------------------------------------------------------
# metrics from ranks
# ----------------------------------------------------------------------------


def _rank_sums(ranks: Tensor, ks: tuple[int, ...], not_found: int | None) -> dict[str, float]:
    """Additive sufficient statistics: count, hits@K (exact ints), DCG@K sums."""
    # float64 on the CPU: ranks are only [b], and exact-ish sums make streamed
    # batches agree with one shot.
    r = ranks.detach().to("cpu", torch.float64)
    gains = 1.0 / torch.log2(r + 2.0)
    sums: dict[str, float] = {"count": int(r.numel())}
    for k in ks:
        hit = r < (k if not_found is None else min(k, not_found))
        sums[f"hit@{k}"] = int(hit.sum())
        sums[f"dcg@{k}"] = float(gains[hit].sum())
    return sums


def _finalize(sums: dict[str, float], ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    count = sums["count"]
    out: dict[str, float] = {}
    for k in ks:  # an empty group has no mean: NaN, with count 0 beside it
        out[f"{prefix}recall@{k}"] = sums[f"hit@{k}"] / count if count else math.nan
    for k in ks:
        out[f"{prefix}ndcg@{k}"] = sums[f"dcg@{k}"] / count if count else math.nan
    out[f"{prefix}count"] = count
    return out


def metrics_from_ranks(
    ranks: Tensor, ks: Sequence[int] = DEFAULT_KS, prefix: str = "", not_found: int | None = None
) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over users, plus `count`.

    ranks: [b] 0-based target ranks. prefix names the protocol
        (`exclude_seen/`, `sampled100/`). not_found: the rank that means "not
        in the ranking" (see module doc); it is a miss at every cutoff, and
        no rank may exceed it.
    Returns {prefix+"recall@K", prefix+"ndcg@K" for K in ks, prefix+"count"};
    metrics are NaN when ranks is empty.
    """
    ks = _check_ks(ks)
    _check_ranks(ranks, not_found)
    return _finalize(_rank_sums(ranks, ks, not_found), ks, prefix)


def head_items(train_item_counts: Tensor, head_fraction: float = 0.2) -> Tensor:
    """Bool mask [N] of the head: the ceil(head_fraction * N) most interacted items.

    train_item_counts: [N] interactions per item in the *training* split.
    Ties in count go to the lower item id (stable sort). Items with count 0
    are always tail, so the head may be smaller than ceil(head_fraction * N).
    """
    counts = train_item_counts
    if not isinstance(counts, Tensor) or counts.dim() != 1:
        raise ValueError(
            f"train_item_counts: expected a 1-D tensor [N], got {getattr(counts, 'shape', counts)}"
        )
    if counts.numel() and bool((counts < 0).any()):
        raise ValueError("train_item_counts: counts must be >= 0")
    if not 0.0 <= head_fraction <= 1.0:
        raise ValueError(f"head_fraction: expected a value in [0, 1], got {head_fraction}")
    n = counts.numel()
    # The epsilon keeps float error (0.2 * 15 = 3.0000000000000004) from adding an item.
    num_head = min(n, math.ceil(head_fraction * n - 1e-9))
    order = torch.sort(counts, descending=True, stable=True).indices[:num_head]
    mask = torch.zeros(n, dtype=torch.bool, device=counts.device)
    mask[order] = True
    return mask & (counts > 0)


def grouped_metrics(
    ranks: Tensor,
    targets: Tensor,
    head_mask: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    prefix: str = "",
    not_found: int | None = None,
) -> dict[str, float]:
    """`metrics_from_ranks` overall, for head targets (`head/`) and tail (`tail/`).

    ranks, targets: [b]; head_mask: bool [N] from `head_items`. not_found
    defaults to N (see `RankingEvaluator`).
    Keys: `recall@10`, `head/recall@10`, `tail/ndcg@5`, `head/count`, ...
    (after prefix: `exclude_seen/head/recall@10`).
    """
    evaluator = RankingEvaluator(head_mask.numel(), ks, head_mask, prefix, not_found)
    evaluator.add(ranks, targets)
    return evaluator.compute()


class RankingEvaluator:
    """Streams batches of ranks; `compute()` equals the metrics of the concatenation.

    num_items: N, the catalog size (targets lie in [0, N)).
    head_mask: optional bool [N]; adds `head/` and `tail/` metrics.
    prefix: as in `metrics_from_ranks`.
    not_found: the "not found" rank; defaults to N (`target_ranks`). Set it to
        K for `ranks_from_topk`, num_negatives + 1 for `sampled_target_ranks`.
    """

    def __init__(
        self,
        num_items: int,
        ks: Sequence[int] = DEFAULT_KS,
        head_mask: Tensor | None = None,
        prefix: str = "",
        not_found: int | None = None,
    ):
        self.num_items = num_items
        self.ks = _check_ks(ks)
        if head_mask is not None and (
            head_mask.dtype != torch.bool or head_mask.shape != (num_items,)
        ):
            raise ValueError(
                f"head_mask: expected bool [{num_items}], got {head_mask.dtype} {_shape(head_mask)}"
            )
        self.head_mask = None if head_mask is None else head_mask.detach().cpu()
        self.prefix = prefix
        self.not_found = num_items if not_found is None else not_found
        self.reset()

    def _groups(self) -> tuple[str, ...]:
        return ("",) if self.head_mask is None else ("", "head/", "tail/")

    def reset(self) -> None:
        empty = torch.zeros(0, dtype=torch.long)
        self._sums = {g: _rank_sums(empty, self.ks, self.not_found) for g in self._groups()}

    def add(self, ranks: Tensor, targets: Tensor) -> None:
        """Add one batch: ranks [b] (from `target_ranks` etc.), targets [b]."""
        _check_ranks(ranks, self.not_found)
        if not isinstance(targets, Tensor) or targets.shape != ranks.shape:
            raise ValueError(
                f"targets: expected shape {_shape(ranks)} like ranks, got {getattr(targets, 'shape', targets)}"
            )
        _check_ids("targets", targets, self.num_items)
        ranks, targets = ranks.detach().cpu(), targets.detach().cpu()
        batches = {"": ranks}
        if self.head_mask is not None:
            is_head = self.head_mask[targets]
            batches.update({"head/": ranks[is_head], "tail/": ranks[~is_head]})
        for group, r in batches.items():
            for key, value in _rank_sums(r, self.ks, self.not_found).items():
                self._sums[group][key] += value

    def merge(self, other: RankingEvaluator) -> None:
        """Fold in another evaluator's batches (e.g. one per data-parallel worker)."""
        if (other.ks, other.not_found, other._groups()) != (
            self.ks,
            self.not_found,
            self._groups(),
        ):
            raise ValueError(
                "other: evaluators must share ks, not_found and head/tail grouping to merge"
            )
        for group, sums in other._sums.items():
            for key, value in sums.items():
                self._sums[group][key] += value

    def compute(self) -> dict[str, float]:
        """Metrics so far, keyed `prefix + [head/|tail/] + recall@K|ndcg@K|count`."""
        out: dict[str, float] = {}
        for group in self._groups():
            out.update(_finalize(self._sums[group], self.ks, self.prefix + group))
        return out
