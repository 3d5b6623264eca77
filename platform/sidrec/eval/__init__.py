"""sidrec.eval: the one definition of every metric used by every model and job.

Ranking (`metrics`): full-catalog leave-one-out ranks with a deterministic tie
rule (descending score, then ascending item id), Recall@K / NDCG@K, the
`exclude_seen/` and `sampled{n}/` protocols, head/tail splits and a streaming
`RankingEvaluator`. SID tables (`sids`): collision rate, items per SID,
codebook utilization and perplexity per level.

    ranks = target_ranks(scores, targets)                  # scores: [b x N]
    evaluator.add(ranks, targets); evaluator.compute()     # {"recall@10": ...}
"""

from sidrec.eval.metrics import (
    DEFAULT_KS,
    EXCLUDE_SEEN_PREFIX,
    RankingEvaluator,
    draw_negatives,
    grouped_metrics,
    head_items,
    history_mask,
    metrics_from_ranks,
    ranks_from_topk,
    sampled_prefix,
    sampled_target_ranks,
    target_ranks,
)
from sidrec.eval.sids import (
    codebook_perplexity,
    codebook_utilization,
    collision_rate,
    max_items_per_sid,
    prefix_collision_rates,
    sid_table_metrics,
)

__all__ = [
    "DEFAULT_KS",
    "EXCLUDE_SEEN_PREFIX",
    "RankingEvaluator",
    "codebook_perplexity",
    "codebook_utilization",
    "collision_rate",
    "draw_negatives",
    "grouped_metrics",
    "head_items",
    "history_mask",
    "max_items_per_sid",
    "metrics_from_ranks",
    "prefix_collision_rates",
    "ranks_from_topk",
    "sampled_prefix",
    "sampled_target_ranks",
    "sid_table_metrics",
    "target_ranks",
]
