"""Embeddings of SID tokens, plain (TIGER) or hierarchy-aware (HiD-VAE §4.2.7).

Tokens use one vocabulary over all levels, as TIGER does: the code c of level
l is token offsets[l] + c, V = sum_l K_l rows. Both variants compute a [V x d]
table and gather from it, so the hierarchy-aware projection runs once per
forward over V (~800) rows, not once per token (millions per epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def vocab_levels(codebook_sizes: Sequence[int]) -> Tensor:
    """[V] the level of each vocabulary row."""
    return torch.repeat_interleave(
        torch.arange(len(codebook_sizes)), torch.tensor(list(codebook_sizes))
    )


class SidEmbedding(nn.Module):
    """TIGER: one learnable row per (level, code)."""

    def __init__(self, codebook_sizes: Sequence[int], d_model: int):
        super().__init__()
        self.codes = nn.Embedding(sum(codebook_sizes), d_model)
        nn.init.normal_(self.codes.weight, std=0.02)

    def table(self) -> Tensor:
        """[V x d]"""
        return self.codes.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.table())


class HierarchicalSidEmbedding(nn.Module):
    """HiD-VAE §4.2.7: e(l, c) = W [code(l, c) ⊕ level(l) ⊕ text(l, c)] + b.

    code: learnable [V x d_model]; level: learnable [L x d_level]; text: the
    frozen sentence embedding of the code's tag path (e.g. "Makeup > Nails"),
    [V x text_dim], a buffer (saved with the model, never trained); zero rows
    where a code has no tag (the disambiguation level). W projects the
    concatenation to d_model.
    """

    def __init__(self, codebook_sizes: Sequence[int], d_model: int, text_dim: int):
        super().__init__()
        if text_dim < 1:
            raise ValueError("text_dim must be >= 1 for hierarchy-aware SID embeddings")
        v, levels = sum(codebook_sizes), len(codebook_sizes)
        # A quarter of d for the level: it carries only L distinct values.
        d_level = max(8, d_model // 4)
        self.codes = nn.Embedding(v, d_model)
        self.levels = nn.Embedding(levels, d_level)
        self.register_buffer("text", torch.zeros(v, text_dim))
        self.register_buffer("row_level", vocab_levels(codebook_sizes), persistent=False)
        self.proj = nn.Linear(d_model + d_level + text_dim, d_model)
        nn.init.normal_(self.codes.weight, std=0.02)
        nn.init.normal_(self.levels.weight, std=0.02)

    def start_as_plain(self) -> None:
        """W = [I | 0 | 0], b = 0: at step 0 the table is the code rows alone (the
        plain SidEmbedding), and the level and tag-text terms grow in from zero as
        far as the loss finds them useful. §4.2.7 gives the form, not the init.
        With a random W the frozen text term dominates the start: sibling codes
        under one tag begin nearly equal, and SID-GPT on HiD-VAE SIDs trailed plain
        code embeddings by ~20% at epoch 19 and 4% at the end
        (docs/RESULTS_recommender.md)."""
        d = self.codes.embedding_dim
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[:, :d].copy_(torch.eye(d))
            self.proj.bias.zero_()

    def set_text(self, text: Tensor) -> None:
        """text: [V x text_dim] tag-path embeddings (row = vocabulary token)."""
        if text.shape != self.text.shape:
            raise ValueError(f"text: expected {tuple(self.text.shape)}, got {tuple(text.shape)}")
        with torch.no_grad():
            self.text.copy_(text)

    def table(self) -> Tensor:
        """[V x d]"""
        parts = [self.codes.weight, self.levels(self.row_level), self.text]
        return self.proj(torch.cat(parts, dim=-1))

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.table())
