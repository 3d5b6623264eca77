"""Transformer pieces shared by SASRec and TIGER: attention over SDPA and a pointwise FFN.

Pre-LN throughout (Xiong et al., 2020): it trains without learning-rate
warmup tricks at the small sizes used here and lets one final LayerNorm
normalize the output. Attention goes through `F.scaled_dot_product_attention`
so that the flash / memory-efficient kernels run on GPU and the fused CPU
kernel on CPU; heads x head_dim may differ from d_model (TIGER: 6 x 64 over
d_model 128), which `nn.MultiheadAttention` does not allow.

Shapes: b batch, s query length, S key length, h heads, dh head dim.
Masks are bool and broadcast to [b x h x s x S]; True = may attend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections.

    The split lets a decoder project the encoder memory to keys/values once
    per user (`project_kv`) and reuse them at every beam step.
    """

    def __init__(self, d_model: int, num_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        inner = num_heads * head_dim
        self.q = nn.Linear(d_model, inner)
        self.kv = nn.Linear(d_model, 2 * inner)
        self.out = nn.Linear(inner, d_model)

    def heads(self, x: Tensor) -> Tensor:
        """[b x s x h*dh] -> [b x h x s x dh]."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: [b x S x d] -> keys, values: [b x h x S x dh] each."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(
        self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """x: [b x s x d] queries over k, v: [b x h x S x dh] -> [b x s x d]."""
        q = self.heads(self.q(x))
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.out(o.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """Self-attention. x: [b x s x d]."""
        k, v = self.project_kv(x)
        return self.attend(x, k, v, mask, causal)


class FeedForward(nn.Module):
    """Pointwise two-layer MLP with ReLU (SASRec §3.3; T5 v1.0 / TIGER)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EncoderBlock(nn.Module):
    """Pre-LN self-attention + FFN; causal for SASRec, bidirectional for TIGER's encoder."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, num_heads, head_dim, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask, causal))
        return x + self.drop(self.ffn(self.ln2(x)))


def padding_mask(valid: Tensor, causal: bool) -> Tensor:
    """Attention mask [b x 1 x s x s] from valid: [b x s] bool (False = padding).

    Keys that are padding are hidden. A padding query may always see itself,
    so that no softmax row is empty (SDPA returns NaN for an all-False row);
    its output is never read.
    """
    s = valid.shape[1]
    mask = valid[:, None, None, :].expand(-1, 1, s, s)
    if causal:
        mask = mask & torch.ones(s, s, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(s, dtype=torch.bool, device=valid.device)
    return mask | eye
