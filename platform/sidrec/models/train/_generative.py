"""What the SID-generating loops (TIGER, SID-GPT) share: the SID inputs a
builder reads from the config, and ranking by trie-constrained beam search."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sidrec.data.sids import read_sid_table
from sidrec.decoding import SidTrie, constrained_beam_search
from sidrec.eval.metrics import EXCLUDE_SEEN_PREFIX, history_mask, ranks_from_topk
from sidrec.models._topk import drop_seen
from sidrec.models.train.config import TrainConfig

__all__ = ["beam_protocols", "beam_ranker", "sid_inputs"]


def sid_inputs(cfg: TrainConfig, num_items: int, model: str) -> dict:
    """item_codes [N x L'], codebook_sizes and tag_text (None unless hierarchy-aware)
    for a SID model's builder, from cfg.sids / cfg.tag_text."""
    if cfg.sids is None:
        raise ValueError(
            f"{model} needs a SID table: set sids (e.g. --sids <root>/sids/<run>.parquet)"
        )
    table = read_sid_table(cfg.sids, num_items=num_items)
    tag_text = None
    if cfg.hierarchy_aware:
        if cfg.tag_text is None:
            raise ValueError(
                "hierarchy_aware=True needs tag_text (tag-path embeddings); or set it False"
            )
        tag_text = torch.load(cfg.tag_text, map_location="cpu", weights_only=True)
    return {
        "item_codes": torch.as_tensor(table.full_codes()),
        "codebook_sizes": table.full_codebook_sizes(),
        "tag_text": tag_text,
    }


def beam_protocols(cfg: TrainConfig) -> dict[str, int]:
    """The protocols a generated top-k reports; not found = the beam's length."""
    return {"": cfg.beam_width, EXCLUDE_SEEN_PREFIX: cfg.beam_width}


def beam_ranker(
    net_of: Callable[[], torch.nn.Module], trie: SidTrie, beam_width: int, num_items: int
) -> Callable:
    """rank_batch(history, users, targets, full) for `evaluate_split`: the target's rank
    in the trie-constrained beam (primary and `exclude_seen/`).

    net_of: returns the bare model (the DecoderStep), called per batch so a DDP
    wrapper is unwrapped at evaluation time."""

    def rank_batch(hist: Tensor, users: Tensor, targets: Tensor, full: list[np.ndarray]):
        net = net_of()
        state = net.encode(hist, users)
        items = constrained_beam_search(
            net, hist.shape[0], trie, beam_width=beam_width, topk=beam_width, state=state
        ).items  # [b x beam], best first, -1 padding
        seen = history_mask(full, num_items, device=items.device)
        return {
            "": ranks_from_topk(items, targets),
            EXCLUDE_SEEN_PREFIX: ranks_from_topk(drop_seen(items, seen)[0], targets),
        }

    return rank_batch
