"""Sequence encoders H2Rec can run each branch on: SASRec, GRU4Rec, BERT4Rec.

Every encoder maps item vectors to one hidden state per position:
`encoder(x, valid) -> [b x s x d]` for x: [b x s x d], left-padded, and
valid: [b x s] bool (False on padding) or None for a dense batch. `causal`
says whether position t only reads positions <= t: then every position can
be trained on the item after it (SASRec, GRU4Rec); a bidirectional encoder
(BERT4Rec) is read, and trained, at the last position only, because position
t < s - 1 sees its own target.

- SASRec (Kang & McAuley 2018): causal pre-LN transformer, learned positions
  counted back from the most recent item, as `sidrec.models.sasrec`.
- GRU4Rec (Hidasi et al. 2016; Tan et al. 2016 for next-item training):
  a GRU; padded rows are packed so padding never enters the state.
- BERT4Rec (Sun et al. 2019): the same transformer without the causal mask.
  Only its read-out is BERT4Rec's: the cloze (masked item) objective is not
  implemented here; it trains on the next item at the last position.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from sidrec.models._layers import EncoderBlock, padding_mask

__all__ = [
    "BACKBONES",
    "GRUEncoder",
    "SequenceEncoder",
    "TransformerEncoder",
    "bert4rec_encoder",
    "gru4rec_encoder",
    "sasrec_encoder",
]


class SequenceEncoder(Protocol):
    causal: bool

    def __call__(self, x: Tensor, valid: Tensor | None = None) -> Tensor: ...


class TransformerEncoder(nn.Module):
    """Pre-LN transformer over item vectors with learned positions (SASRec / BERT4Rec)."""

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        max_len: int,
        causal: bool,
    ):
        super().__init__()
        self.causal, self.max_len = causal, max_len
        self.positions = nn.Embedding(max_len, d_model)
        nn.init.xavier_normal_(self.positions.weight)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, num_heads, d_model // num_heads, ffn_dim, dropout)
            for _ in range(num_layers)
        )
        self.drop = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x: [b x s x d] (s <= max_len), valid: [b x s] or None -> [b x s x d]."""
        s = x.shape[1]
        # Positions count back from the most recent item, as SASRec's left-padded window.
        x = self.drop(x + self.positions.weight[self.max_len - s :])
        mask = None if valid is None else padding_mask(valid, causal=self.causal)
        for block in self.blocks:
            x = block(x, mask, causal=self.causal and mask is None)
        return self.ln(x)


class GRUEncoder(nn.Module):
    """GRU4Rec's recurrent encoder (causal by construction)."""

    causal = True

    def __init__(self, d_model: int, num_layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(d_model, d_model, num_layers, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x: [b x s x d] left-padded, valid: [b x s] or None -> [b x s x d] (padding rows: 0)."""
        x = self.drop(x)
        if valid is None or bool(valid.all()):
            return self.ln(self.gru(x)[0])
        # Left padding -> right padding (a roll per row), pack, run, and roll back,
        # so the state starts at each row's first real item.
        s = x.shape[1]
        lengths = valid.sum(1)
        shift = (torch.arange(s, device=x.device)[None, :] + (s - lengths)[:, None]) % s  # [b x s]
        right = x.gather(1, shift[..., None].expand_as(x))
        packed = nn.utils.rnn.pack_padded_sequence(
            right, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=s)[0]
        back = (torch.arange(s, device=x.device)[None, :] - (s - lengths)[:, None]) % s
        out = out.gather(1, back[..., None].expand_as(out))
        return self.ln(out) * valid[..., None]


def sasrec_encoder(
    d_model: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float, max_len: int
) -> TransformerEncoder:
    return TransformerEncoder(d_model, num_layers, num_heads, ffn_dim, dropout, max_len, True)


def bert4rec_encoder(
    d_model: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float, max_len: int
) -> TransformerEncoder:
    return TransformerEncoder(d_model, num_layers, num_heads, ffn_dim, dropout, max_len, False)


def gru4rec_encoder(
    d_model: int, num_layers: int, num_heads: int, ffn_dim: int, dropout: float, max_len: int
) -> GRUEncoder:
    del num_heads, ffn_dim, max_len  # a GRU has neither heads, an FFN nor a position table
    return GRUEncoder(d_model, num_layers, dropout)


# The config names a backbone; each name is one builder with the same signature.
BACKBONES = {"sasrec": sasrec_encoder, "gru4rec": gru4rec_encoder, "bert4rec": bert4rec_encoder}
