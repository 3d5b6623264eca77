"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A causal transformer over the item-id sequence; the hidden state at position
t scores item t+1 by a dot product with the (shared) item embeddings. Loss at
every position, with one of two objectives, because the choice alone moves
Beauty R@10 from about .050 to about .085 and every comparison must say
which (issue 5):

- `ce`: full-softmax cross-entropy over the whole catalog (as in Klenitskiy &
  Vasilev, RecSys 2023, "Turning Dross Into Gold Loss"); the stronger one.
- `bce`: the paper's binary cross-entropy with one uniformly sampled negative
  per position (SASRec Eq. 7), the negative drawn outside the user's sequence.

`seen_penalty` > 0 adds, with `ce`, a token-level unlikelihood term (Welleck et
al., ICLR 2020, Eq. 4) on the items the user has already read: at each position,
the sum of -log(1 - p(item)) over the history so far. On a log where items do
not repeat (Beauty: no user buys an item twice) the model learns so from the
data, instead of the evaluation filtering its history out. 0 = off (the paper).

Positions count back from the most recent item, as the paper's left-padded
window does: the last item of any history always has position max_len - 1.

    model = sasrec_beauty(num_items=12101, loss="ce")
    loss = model(inputs, targets)          # inputs, targets: [b x s] (dense; pass valid= if padded)
    scores = model.score(histories)        # [b x N]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidrec.models._layers import EncoderBlock, padding_mask

__all__ = [
    "SASREC_BEAUTY",
    "SASRec",
    "SASRecConfig",
    "bce_one_negative_loss",
    "full_softmax_loss",
    "history_ids",
    "pad_histories",
    "sample_negatives",
    "sasrec",
    "sasrec_beauty",
]

LOSSES = ("ce", "bce")


@dataclass(frozen=True)
class SASRecConfig:
    num_items: int  # N: the catalog (item ids 0..N-1)
    d_model: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    dropout: float
    max_len: int  # most recent items the model reads (and trains on) per user
    loss: str  # "ce" (full softmax) or "bce" (one sampled negative)
    # weight of the unlikelihood of the user's own history items (with ce; 0 = off)
    seen_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        check_seen_penalty(self.seen_penalty, self.loss)
        if self.num_items < 2 or self.max_len < 1:
            raise ValueError(f"need num_items >= 2 and max_len >= 1, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sasrec(
    num_items: int,
    *,
    d_model: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    dropout: float,
    max_len: int,
    loss: str,
    seen_penalty: float = 0.0,
) -> SASRec:
    return SASRec(
        SASRecConfig(
            num_items, d_model, num_layers, num_heads, ffn_dim, dropout, max_len, loss, seen_penalty
        )
    )


# sasrec_beauty()'s architecture as data, for configs that set it field by field
# (sidrec.models.train.run_config: `--set d_model=128`).
SASREC_BEAUTY = MappingProxyType(
    dict(
        d_model=64,
        num_layers=2,
        num_heads=1,
        ffn_dim=64,
        dropout=0.5,
        max_len=50,
    )
)


def sasrec_beauty(num_items: int, loss: str = "ce") -> SASRec:
    """The Beauty baseline of issue 5 (trained with Adam lr 1e-3, batch 256: `SASREC_RECIPE`).

    d 64, 2 layers, dropout 0.5, history 50: the setting that reaches R@10
    .0823 / N@10 .0432 with `ce` after ~390 epochs. One head and FFN width = d
    as in the paper (§3.3, Table 2 uses d 50 on Beauty).
    """
    return sasrec(num_items, **SASREC_BEAUTY, loss=loss)


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        # Row N is the padding item: zero and never trained (padding_idx).
        self.items = nn.Embedding(cfg.num_items + 1, d, padding_idx=cfg.num_items)
        self.positions = nn.Embedding(cfg.max_len, d)
        self.blocks = nn.ModuleList(
            EncoderBlock(d, cfg.num_heads, d // cfg.num_heads, cfg.ffn_dim, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(d)
        # Xavier as the reference implementations (TF original, pmixer/SASRec.pytorch):
        # N(0, 1) item rows times sqrt(d) would start the softmax far from uniform.
        for emb in (self.items, self.positions):
            nn.init.xavier_normal_(emb.weight)
        with torch.no_grad():
            self.items.weight[cfg.num_items].zero_()

    @property
    def item_weight(self) -> Tensor:
        """[N x d] the item embeddings that score (no padding row)."""
        return self.items.weight[: self.cfg.num_items]

    def hidden(self, inputs: Tensor, valid: Tensor | None = None) -> Tensor:
        """inputs: [b x s] item ids, left-padded with -1 (s <= max_len) -> [b x s x d].

        valid: [b x s] bool, False on padding; None = no padding (the training
        batches are padding-free, and this skips the mask).
        """
        s = inputs.shape[1]
        if s > self.cfg.max_len:
            raise ValueError(
                f"inputs: {s} positions > max_len {self.cfg.max_len}; keep the last ones"
            )
        ids = inputs if valid is None else inputs.masked_fill(~valid, self.cfg.num_items)
        x = self.items(ids) * math.sqrt(self.cfg.d_model)  # SASRec §3.2 scales by sqrt(d)
        x = self.drop(x + self.positions.weight[self.cfg.max_len - s :])
        mask = None if valid is None else padding_mask(valid, causal=True)
        for block in self.blocks:
            x = block(x, mask, causal=mask is None)
        return self.ln(x)

    def forward(self, inputs: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
        """Training loss at every position. inputs, targets: [b x s]; target t is the
        item after inputs[:, t]. valid: [b x s] bool when the batch is padded
        (inputs -1 there, targets -1 = ignored); None for a dense batch (no
        mask, no host sync: what the length-bucketed training batches are)."""
        h = self.hidden(inputs, valid)  # [b x s x d]
        if self.cfg.loss == "ce":
            seen = history_ids(inputs, targets).flatten(0, 1) if self.cfg.seen_penalty else None
            return full_softmax_loss(
                h.flatten(0, 1), targets.flatten(), self.item_weight, seen, self.cfg.seen_penalty
            )
        negatives = sample_negatives(targets, inputs, self.cfg.num_items)
        return bce_one_negative_loss(
            h.flatten(0, 1), targets.flatten(), negatives.flatten(), self.item_weight
        )

    @torch.no_grad()
    def score(self, histories: Sequence[np.ndarray] | Tensor) -> Tensor:
        """-> [b x N] scores of every item after each history (most recent last).

        histories: b id sequences, or a left-padded LongTensor [b x s] (-1 = pad).
        Only the last max_len items are read.
        """
        inputs = pad_histories(histories, self.cfg.max_len, self.item_weight.device)
        valid = inputs >= 0
        h = self.hidden(inputs, None if bool(valid.all()) else valid)[:, -1]  # [b x d]
        return h @ self.item_weight.T


def pad_histories(
    histories: Sequence[np.ndarray] | Tensor, max_len: int, device: torch.device | str = "cpu"
) -> Tensor:
    """Left-pad (-1) and truncate histories to their last <= max_len items: [b x s]."""
    if isinstance(histories, Tensor):
        return histories[:, -max_len:].to(device, torch.long)
    width = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = np.full((len(histories), width), -1, dtype=np.int64)
    for row, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-width:]
        if len(h):
            out[row, width - len(h) :] = h
    return torch.from_numpy(out).to(device)


def full_softmax_loss(
    hidden: Tensor,
    targets: Tensor,
    item_weight: Tensor,
    seen: Tensor | None = None,
    seen_penalty: float = 0.0,
) -> Tensor:
    """Cross-entropy over all N items. hidden: [T x d]; targets: [T] (-1 ignored);
    item_weight: [N x d]. Mean over the non-ignored positions.

    seen: [T x H] the items already read at each position (-1 = none; `history_ids`),
    whose unlikelihood -log(1 - p) is summed per position and added times seen_penalty.
    """
    logits = (hidden @ item_weight.T).float()  # [T x N]
    if seen is None or not seen_penalty:
        return F.cross_entropy(logits, targets, ignore_index=-1)
    return _SeenUnlikelihoodCE.apply(logits, targets, seen, seen_penalty)


class _SeenUnlikelihoodCE(torch.autograd.Function):
    """CE + seen_penalty * sum over seen items of -log(1 - p), mean over kept positions,
    with a hand-written gradient: autograd through logsumexp and the [T x H] gather
    makes two extra [T x N] buffers and costs ~50% of a Beauty step; this costs what
    F.cross_entropy does (one softmax in the backward).

    d/dlogits = c * p - onehot(target) + penalty * sum_h w_h onehot(seen_h),
    w_h = p_h / (1 - p_h), c = 1 - penalty * sum_h w_h (per position).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, seen: Tensor, penalty: float) -> Tensor:
        keep = targets >= 0
        count = keep.sum().clamp(min=1)
        log_norm = logits.logsumexp(-1, keepdim=True)  # [T x 1]
        target_logp = logits.gather(-1, targets.clamp(min=0)[:, None]) - log_norm
        seen_logp = logits.gather(-1, seen.clamp(min=0)) - log_norm  # [T x H]
        # -log(1 - p) = -log(-expm1(log p)); the clamp keeps p = 1 finite.
        seen_keep = (seen >= 0) & keep[:, None]
        not_p = -torch.expm1(seen_logp.clamp(max=-1e-6))
        unlikely = (-torch.log(not_p) * seen_keep).sum()
        ce = -(target_logp[:, 0] * keep).sum()
        ctx.save_for_backward(logits, log_norm, targets, seen, seen_keep, seen_logp, not_p, count)
        ctx.penalty = penalty
        return (ce + penalty * unlikely) / count

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, log_norm, targets, seen, seen_keep, seen_logp, not_p, count = ctx.saved_tensors
        keep = (targets >= 0).to(logits.dtype)[:, None]
        weight = ctx.penalty * seen_logp.exp() / not_p * seen_keep  # [T x H]
        scale = keep * (1 - weight.sum(-1, keepdim=True))
        out = (logits - log_norm).exp_().mul_(scale)  # c * p, zero on ignored positions
        out.scatter_add_(-1, targets.clamp(min=0)[:, None], -keep)
        out.scatter_add_(-1, seen.clamp(min=0), weight)
        return out.mul_(grad / count), None, None, None


def history_ids(inputs: Tensor, targets: Tensor) -> Tensor:
    """[b x s x s]: row t holds inputs[:, :t + 1], the items read up to position t,
    and -1 after it, on padding and where the item is position t's own target (a
    repeat the log does hold is not penalised). inputs, targets: [b x s], -1 = padding."""
    s = inputs.shape[1]
    seen = inputs[:, None, :].expand(-1, s, -1)
    read = torch.ones(s, s, dtype=torch.bool, device=inputs.device).tril()
    keep = read & (seen >= 0) & (seen != targets[:, :, None])
    return torch.where(keep, seen, -1)


def check_seen_penalty(seen_penalty: float, loss: str) -> None:
    if seen_penalty < 0:
        raise ValueError(f"seen_penalty must be >= 0, got {seen_penalty}")
    if seen_penalty and loss != "ce":
        raise ValueError(f"seen_penalty needs loss 'ce' (the full softmax), got loss {loss!r}")


def bce_one_negative_loss(
    hidden: Tensor, targets: Tensor, negatives: Tensor, item_weight: Tensor
) -> Tensor:
    """SASRec Eq. 7: -log s(h.e_pos) - log(1 - s(h.e_neg)), mean over positions.

    hidden: [T x d]; targets, negatives: [T] (targets -1 = ignored position).
    """
    keep = (targets >= 0).float()
    pos = (hidden * item_weight[targets.clamp(min=0)]).sum(-1).float()
    neg = (hidden * item_weight[negatives]).sum(-1).float()
    # softplus(-x) = -log sigmoid(x), softplus(x) = -log(1 - sigmoid(x)); stable for large |x|.
    per_position = F.softplus(-pos) + F.softplus(neg)
    return (per_position * keep).sum() / keep.sum().clamp(min=1.0)


def sample_negatives(
    targets: Tensor,
    inputs: Tensor,
    num_items: int,
    generator: torch.Generator | None = None,
    redraws: int = 3,
) -> Tensor:
    """[b x s] uniform random items, redrawn (up to `redraws` times) where they hit the
    user's own sequence (inputs and targets), as the SASRec reference code does.

    With N = 12k items and <= 51 items per user, a collision survives 3 redraws
    with probability < 1e-13.
    """
    seen = torch.cat([inputs, targets], 1)[:, None, :]  # [b x 1 x 2s]
    neg = torch.randint(num_items, targets.shape, device=targets.device, generator=generator)
    for _ in range(redraws):
        hit = (neg[..., None] == seen).any(-1)
        fresh = torch.randint(num_items, targets.shape, device=targets.device, generator=generator)
        neg = torch.where(hit, fresh, neg)
    return neg
