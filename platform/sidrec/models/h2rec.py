"""H2Rec: a dual-branch sequential recommender over semantic IDs and hash IDs
(Liu et al., "The Best of the Two Worlds: Harmonizing Semantic and Hash IDs for
Sequential Recommendation", arXiv 2512.10388, §4.2, Eq. 1-10, Alg. 1).

Two branches read the same history (b users, s positions, L code levels, d):

- SID branch: item t is its L code embeddings e^l_{i_t} (one table per level,
  looked up through the SID table, any learner's), fused by per-position level
  weights alpha (the multi-granularity fusion network, Eq. 2-4:
  alpha = softmax(MLP([h_{i_t} ; p]) + p), h the HID embedding of the last
  item read, p a learnable residual prior over levels), then its own
  sequence encoder -> u_sid.
- HID branch: item-ID embeddings, initialised from the catalog's LLM
  embeddings reduced to d by PCA (Alg. 1 line 4), enriched by the
  multi-granularity cross-attention (Eq. 5: HID queries attend to each
  level's SID keys/values, causally, the L outputs weighted by alpha and
  added residually), then its own sequence encoder -> u_hid.

Scoring (Eq. 9): user [u_hid ; u_sid] . item [h_i ; mean_l e^l_i]. Loss
(Eq. 10 + Eq. 7 + Eq. 8): ranking + beta * code-guided alignment + gamma *
masked sequence granularity (`_h2rec_losses.py`). The ranking loss is the
paper's BCE with one sampled negative (`loss="bce"`) or the full-softmax
cross-entropy (`loss="ce"`), which is what makes SASRec strong on Beauty and
so what a fair comparison uses.

Chosen where the issue leaves it open (docs/RESULTS_h2rec.md repeats them):
the item-side SID vector is the plain mean over levels (user-independent,
so one [N x 2d] matrix scores the catalog); training runs at every position
like SASRec (the fusion weights are per position, the cross-attention causal);
the disambiguation suffix of a SID table is not a code level (items that
collide share their SID branch; the HID branch keeps them apart).

    model = h2rec_beauty(codes, codebook_sizes, item_embeddings=llm_emb)
    loss = model(inputs, targets)          # [b x s] each, dense
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
from torch import Tensor, nn

from sidrec.models._backbones import BACKBONES
from sidrec.models._h2rec_losses import alignment_positives, code_alignment_loss, granularity_loss
from sidrec.models._layers import Attention, padding_mask
from sidrec.models.sasrec import (
    bce_one_negative_loss,
    check_seen_penalty,
    full_softmax_loss,
    history_ids,
    pad_histories,
    sample_negatives,
)

__all__ = [
    "H2REC_BEAUTY",
    "H2Rec",
    "H2RecConfig",
    "h2rec",
    "h2rec_beauty",
    "pca_reduce",
]

LOSSES = ("ce", "bce")


@dataclass(frozen=True)
class H2RecConfig:
    num_items: int  # N: the catalog (item ids 0..N-1)
    codebook_sizes: tuple[int, ...]  # K per code level (L levels), from the SID table
    d_model: int  # d of each branch; user and item vectors are 2d (Eq. 9)
    num_layers: int  # per branch encoder
    num_heads: int  # encoders and the cross-attention
    ffn_dim: int
    dropout: float
    max_len: int  # most recent items read per user (SASRec's 50 on Beauty)
    backbone: str = "sasrec"  # sasrec | gru4rec | bert4rec, both branches (`_backbones.py`)
    loss: str = "ce"  # ranking loss: "ce" full softmax, "bce" one negative (the paper's)
    # Eq. 11 weights (the paper sweeps both over {0.01 ... 1}; 0.1 is mid-range).
    beta: float = 0.1  # code-guided alignment (Eq. 7)
    gamma: float = 0.1  # masked sequence granularity (Eq. 8)
    code_threshold: int = 2  # t: items sharing >= t code levels are alignment positives
    window: int = 3  # w: items within w positions in a training sequence are positives
    tau: float = 0.5  # temperature of both contrastive losses (cosine / tau)
    # At most this many distinct target items per alignment batch: the positive
    # mask is [B x B], and the in-batch negatives stop helping well before 1k.
    align_items: int = 512
    # weight of the unlikelihood of the user's own history items in the ce rank loss (0 = off;
    # models/sasrec.py, `full_softmax_loss`)
    seen_penalty: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        check_seen_penalty(self.seen_penalty, self.loss)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        if self.num_items < 2 or self.max_len < 1 or not self.codebook_sizes:
            raise ValueError(f"need num_items >= 2, max_len >= 1 and >= 1 code level, got {self}")
        if not 1 <= self.code_threshold <= len(self.codebook_sizes):
            raise ValueError(
                f"code_threshold must lie in [1, {len(self.codebook_sizes)}] (the levels), "
                f"got {self.code_threshold}"
            )
        if self.window < 0 or self.beta < 0 or self.gamma < 0 or self.tau <= 0:
            raise ValueError("window, beta and gamma must be >= 0 and tau > 0")

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["codebook_sizes"] = list(self.codebook_sizes)
        return out


def h2rec(
    codes: Tensor | np.ndarray,
    codebook_sizes: Sequence[int],
    *,
    d_model: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    dropout: float,
    max_len: int,
    backbone: str = "sasrec",
    loss: str = "ce",
    beta: float = 0.1,
    gamma: float = 0.1,
    code_threshold: int = 2,
    window: int = 3,
    tau: float = 0.5,
    align_items: int = 512,
    seen_penalty: float = 0.0,
    item_embeddings: Tensor | np.ndarray | None = None,
) -> H2Rec:
    """codes: [N x L] each item's SID (no disambiguation suffix); item_embeddings:
    [N x D] LLM item embeddings for the HID init (Alg. 1 line 4), None = Xavier."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    cfg = H2RecConfig(
        codes.shape[0],
        tuple(codebook_sizes),
        d_model,
        num_layers,
        num_heads,
        ffn_dim,
        dropout,
        max_len,
        backbone,
        loss,
        beta,
        gamma,
        code_threshold,
        window,
        tau,
        align_items,
        seen_penalty,
    )
    model = H2Rec(cfg)
    model.set_codes(codes)
    if item_embeddings is not None:
        model.init_hid(torch.as_tensor(np.asarray(item_embeddings), dtype=torch.float32))
    return model


H2REC_BEAUTY = MappingProxyType(
    dict(
        d_model=64,
        num_layers=2,
        num_heads=1,
        ffn_dim=64,
        dropout=0.5,
        max_len=50,
    )
)  # h2rec_beauty()'s architecture (every value; run_config reads it)


def h2rec_beauty(
    codes: Tensor | np.ndarray,
    codebook_sizes: Sequence[int],
    item_embeddings: Tensor | np.ndarray | None = None,
    loss: str = "ce",
    **knobs: Any,
) -> H2Rec:
    """Beauty: each branch is `sasrec_beauty`'s encoder (d 64, 2 layers, 1 head,
    dropout 0.5, history 50), so H2Rec vs SASRec compares the method, not the size.

    knobs: H2Rec's own settings over `h2rec`'s defaults (backbone, beta, gamma,
    code_threshold, window, tau, align_items)."""
    return h2rec(
        codes,
        codebook_sizes,
        **H2REC_BEAUTY,
        loss=loss,
        item_embeddings=item_embeddings,
        **knobs,
    )


def pca_reduce(embeddings: Tensor, dim: int, std: float) -> Tensor:
    """[N x D] -> [N x dim]: the top-dim principal components, scaled to an overall std.

    Alg. 1 line 4 initialises the HID table from dimension-reduced LLM
    embeddings; the rescale gives it the scale a Xavier init would have, so
    the sqrt(d) input scaling of the encoders sees the usual magnitudes.
    """
    if embeddings.dim() != 2 or embeddings.shape[1] < dim:
        raise ValueError(
            f"item_embeddings: expected [N x D] with D >= d_model={dim}, got {tuple(embeddings.shape)}"
        )
    centered = embeddings - embeddings.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)  # v: [D x D], rows = components
    reduced = centered @ v[:dim].T
    return reduced * (std / reduced.std().clamp(min=1e-12))


class H2Rec(nn.Module):
    def __init__(self, cfg: H2RecConfig):
        super().__init__()
        self.cfg = cfg
        n, d, levels = cfg.num_items, cfg.d_model, cfg.num_levels
        # HID table; row N is the padding item (zero, never trained).
        self.hid = nn.Embedding(n + 1, d, padding_idx=n)
        # One table for all levels: level l's codes live at offset sum(K_<l);
        # the last row is padding.
        offsets = np.concatenate([[0], np.cumsum(cfg.codebook_sizes)])
        self.pad_code = int(offsets[-1])
        self.register_buffer("code_offsets", torch.as_tensor(offsets[:-1], dtype=torch.long))
        self.codes = nn.Embedding(self.pad_code + 1, d, padding_idx=self.pad_code)
        # [N+1 x L] offset codes per item, padding row last: a buffer, so the
        # state dict (and so a bundle) carries the SID table the model needs.
        self.register_buffer("item_codes", torch.full((n + 1, levels), self.pad_code))
        # Behavioural positives of Eq. 7: training data, not weights, so neither
        # saved nor a buffer (DDP would broadcast a buffer at every step).
        self.cooc_keys: Tensor | None = None
        # Eq. 3: the prior p starts coarse-to-fine (1.0 ... 0.2) and is learned.
        self.prior = nn.Parameter(torch.linspace(1.0, 0.2, levels))
        self.fusion = nn.Sequential(  # Eq. 2: MLP([h ; p]) -> level logits
            nn.Linear(d + levels, d), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(d, levels)
        )
        self.cross = nn.ModuleList(  # Eq. 5: one HID->SID cross-attention per level
            Attention(d, cfg.num_heads, d // cfg.num_heads, cfg.dropout) for _ in range(levels)
        )
        self.ln_query, self.ln_code = nn.LayerNorm(d), nn.LayerNorm(d)
        # Eq. 8: a learned [MASK] vector per level replaces the masked level
        # (absent when gamma = 0: DDP fails on a parameter that gets no gradient).
        self.level_mask = nn.Parameter(torch.randn(levels, d) * 0.02) if cfg.gamma else None
        build = BACKBONES[cfg.backbone]
        args = (d, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.max_len)
        self.sid_encoder, self.hid_encoder = build(*args), build(*args)
        self.drop = nn.Dropout(cfg.dropout)
        for emb in (self.hid, self.codes):  # Xavier, as SASRec's item table
            nn.init.xavier_normal_(emb.weight)
            with torch.no_grad():
                emb.weight[emb.padding_idx].zero_()

    # -- setup ---------------------------------------------------------------

    def set_codes(self, codes: Tensor) -> None:
        """codes: [N x L] raw codes (code c of level l in [0, K_l))."""
        n, levels = self.cfg.num_items, self.cfg.num_levels
        if codes.shape != (n, levels):
            raise ValueError(f"codes: expected [{n} x {levels}], got {tuple(codes.shape)}")
        sizes = torch.as_tensor(self.cfg.codebook_sizes)
        if bool((codes < 0).any()) or bool((codes >= sizes).any()):
            raise ValueError(f"codes: level l must lie in [0, K_l) with K = {list(sizes.tolist())}")
        with torch.no_grad():
            self.item_codes[:n] = codes.to(self.item_codes.device) + self.code_offsets

    def init_hid(self, embeddings: Tensor) -> None:
        """Alg. 1 line 4: HID rows from the LLM item embeddings [N x D], PCA-reduced to d."""
        if embeddings.shape[0] != self.cfg.num_items:
            raise ValueError(
                f"item_embeddings: {embeddings.shape[0]} rows, the catalog has {self.cfg.num_items}"
            )
        n, d = self.cfg.num_items, self.cfg.d_model
        xavier_std = math.sqrt(2.0 / (n + 1 + d))
        with torch.no_grad():
            self.hid.weight[:n] = pca_reduce(embeddings, d, xavier_std).to(self.hid.weight)

    def set_cooccurrence(self, keys: Tensor) -> None:
        """Sorted pair keys i * N + j (`cooccurrence_keys`) for Eq. 7's positives."""
        self.cooc_keys = torch.as_tensor(keys, dtype=torch.long)

    # -- representations -----------------------------------------------------

    @property
    def item_weight(self) -> Tensor:
        """[N x 2d] Eq. 9's item side: [HID embedding ; mean of the L code embeddings]."""
        n = self.cfg.num_items
        return torch.cat([self.hid.weight[:n], self.codes(self.item_codes[:n]).mean(-2)], -1)

    def level_weights(self, hid: Tensor) -> Tensor:
        """Eq. 2-4: alpha = softmax(MLP([h ; p]) + p). hid: [... x d] -> [... x L]."""
        prior = self.prior.expand(*hid.shape[:-1], -1)
        return torch.softmax(self.fusion(torch.cat([hid, prior], -1)) + self.prior, -1)

    def _sid_user(self, levels: Tensor, alpha: Tensor, valid: Tensor | None) -> Tensor:
        """SID branch: levels [b x s x L x d] fused by alpha [b x s x L] -> [b x s x d]."""
        fused = (alpha[..., None] * levels).sum(-2)
        return self.sid_encoder(self.drop(fused * math.sqrt(self.cfg.d_model)), valid)

    def branches(self, inputs: Tensor, valid: Tensor | None = None):
        """inputs: [b x s] item ids (-1 = padding where valid is False).

        Returns u_hid, u_sid: [b x s x d]; levels: [b x s x L x d]; alpha: [b x s x L].
        """
        s = inputs.shape[1]
        if s > self.cfg.max_len:
            raise ValueError(f"inputs: {s} positions > max_len {self.cfg.max_len}")
        ids = inputs if valid is None else inputs.masked_fill(~valid, self.cfg.num_items)
        scale = math.sqrt(self.cfg.d_model)
        hid = self.hid(ids)  # [b x s x d]
        levels = self.codes(self.item_codes[ids])  # [b x s x L x d]
        alpha = self.level_weights(hid)  # the last item read is item t at position t
        u_sid = self._sid_user(levels, alpha, valid)
        # Eq. 5: HID queries, per-level SID keys/values, causal, alpha-weighted, residual.
        query = self.drop(hid * scale)
        q = self.ln_query(query)
        keys = self.ln_code(self.drop(levels * scale))
        mask = None if valid is None else padding_mask(valid, causal=True)
        cross = sum(
            alpha[..., lvl, None]
            * attn.attend(q, *attn.project_kv(keys[:, :, lvl]), mask, mask is None)
            for lvl, attn in enumerate(self.cross)
        )
        u_hid = self.hid_encoder(query + cross, valid)
        return u_hid, u_sid, levels, alpha

    # -- training ------------------------------------------------------------

    def losses(
        self, inputs: Tensor, targets: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Unweighted loss terms: rank (Eq. 10), align (Eq. 7), granularity (Eq. 8).

        inputs, targets: [b x s], target t = the item after inputs[:, t]
        (-1 = ignored); valid: [b x s] when padded, None for a dense batch.
        """
        u_hid, u_sid, levels, alpha = self.branches(inputs, valid)
        user = torch.cat([u_hid, u_sid], -1)  # [b x s x 2d]
        seen = history_ids(inputs, targets) if self.cfg.seen_penalty else None
        if not self.sid_encoder.causal:  # bidirectional: only the last position is honest
            user, targets = user[:, -1:], targets[:, -1:]
            seen = None if seen is None else seen[:, -1:]
        items = self.item_weight
        if self.cfg.loss == "ce":
            seen = None if seen is None else seen.flatten(0, 1)
            rank = full_softmax_loss(
                user.flatten(0, 1), targets.flatten(), items, seen, self.cfg.seen_penalty
            )
        else:
            negatives = sample_negatives(targets, inputs, self.cfg.num_items)
            rank = bce_one_negative_loss(
                user.flatten(0, 1), targets.flatten(), negatives.flatten(), items
            )
        zero = rank.new_zeros(())
        return {
            "rank": rank,
            "align": self._alignment(targets[:, -1]) if self.cfg.beta else zero,
            "granularity": self._granularity(levels, alpha, u_sid, valid)
            if self.cfg.gamma
            else zero,
        }

    def forward(self, inputs: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
        """Eq. 11: rank + beta * align + gamma * granularity (a scalar)."""
        parts = self.losses(inputs, targets, valid)
        return (
            parts["rank"] + self.cfg.beta * parts["align"] + self.cfg.gamma * parts["granularity"]
        )

    def _alignment(self, targets: Tensor) -> Tensor:
        """Eq. 7 over the distinct target items of the batch (at most align_items)."""
        items = torch.unique(targets[targets >= 0])
        if len(items) > self.cfg.align_items:
            items = items[torch.randperm(len(items), device=items.device)[: self.cfg.align_items]]
        if len(items) < 2:
            return self.prior.new_zeros(())
        if self.cooc_keys is not None and self.cooc_keys.device != items.device:
            self.cooc_keys = self.cooc_keys.to(items.device)  # once, after the model moved
        positives = alignment_positives(
            items,
            self.item_codes,
            self.cfg.code_threshold,
            self.cooc_keys if self.cfg.window else None,
            self.cfg.num_items,
        )
        sid = self.codes(self.item_codes[items]).mean(-2)
        return code_alignment_loss(sid, self.hid(items), positives, self.cfg.tau)

    def _granularity(
        self, levels: Tensor, alpha: Tensor, u_sid: Tensor, valid: Tensor | None
    ) -> Tensor:
        """Eq. 8: mask one random level per user, contrast the last-position views."""
        b, _, num_levels, _ = levels.shape
        if b < 2:  # no negatives; a zero that still reaches level_mask, as DDP requires
            return self.level_mask.sum() * 0.0
        masked = torch.randint(num_levels, (b,), device=levels.device)
        hide = nn.functional.one_hot(masked, num_levels).bool()[:, None, :, None]  # [b x 1 x L x 1]
        levels = torch.where(hide, self.level_mask[None, None], levels)
        u_masked = self._sid_user(levels, alpha, valid)
        return granularity_loss(u_sid[:, -1], u_masked[:, -1], self.cfg.tau)

    # -- serving ---------------------------------------------------------------

    @torch.no_grad()
    def score(self, histories: Sequence[np.ndarray] | Tensor) -> Tensor:
        """-> [b x N] Eq. 9 scores of every item after each history (most recent last).

        histories: b id sequences, or a left-padded LongTensor [b x s] (-1 = pad).
        """
        inputs = pad_histories(histories, self.cfg.max_len, self.hid.weight.device)
        valid = inputs >= 0
        u_hid, u_sid, _, _ = self.branches(inputs, None if bool(valid.all()) else valid)
        user = torch.cat([u_hid[:, -1], u_sid[:, -1]], -1)  # [b x 2d]
        return user @ self.item_weight.T
