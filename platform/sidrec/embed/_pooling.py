"""Token states -> one vector per text, respecting the attention mask.

hidden: [b x s x d], mask: [b x s] (1 = real token, 0 = padding). Padding may
sit on either side; every pooler reads only real tokens, so a text's vector is
the same alone or in a batch with longer texts (tests/sidrec/embed/test_backends.py).
"""

from __future__ import annotations

import torch

__all__ = ["POOLERS", "mean_pool", "cls_pool", "last_token_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Sentence-BERT's mean pooling (Reimers & Gurevych 2019), what MiniLM was trained with.
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # BERT's [CLS]: the first real token (position 0 with right padding).
    first = mask.to(torch.int64).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Decoder-only LLMs: only the last real token has attended to the whole text
    # (E5-Mistral, Qwen3-Embedding). Index found from the mask, so left or right
    # padding both work.
    seq = mask.shape[1]
    last = seq - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLERS = {"mean": mean_pool, "cls": cls_pool, "last": last_token_pool}
