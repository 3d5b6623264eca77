"""TIGER: generative retrieval over semantic IDs (Rajput et al., NeurIPS 2023).

An encoder-decoder transformer. The encoder reads a hashed user token and the
user's history, each item flattened to its L' codes (L learned levels + the
disambiguation code when the table needs one): [u, c^1_0 .. c^1_{L'-1}, ...,
c^s_0 .. c^s_{L'-1}]. The decoder generates the next item's L' codes, one
level at a time; at inference `sidrec.decoding.constrained_beam_search`
drives it through `step` / `reorder` (the `DecoderStep` protocol) so that only
SIDs of real items come out.

SID embeddings are switchable (`hierarchy_aware`): TIGER's plain code
embedding, or HiD-VAE's hierarchy-aware one (§4.2.7: code ⊕ level ⊕ frozen
tag-path text, projected; `_sid_embedding.py`), which needs tag text.

Differences from the paper, and why:
- learned absolute positions counted back from the most recent code (not T5
  relative buckets): histories are at most 20 x L' tokens, and counting back
  keeps the most recent item's position fixed whatever the history length;
- pre-LN blocks over SDPA (fast kernels on GPU and CPU);
- one output head per level (K_l logits), since levels have their own
  codebooks and the beam search asks for K_t logits at step t.

    model = tiger_small(item_codes, codebook_sizes)         # item_codes: [N x L']
    loss = model(history, users, targets)                   # history: [b x s]
    state = model.encode(history, users)                    # then beam search:
    constrained_beam_search(model, b, trie, beam_width=20, topk=20, state=state)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidrec.models._layers import Attention, EncoderBlock, FeedForward
from sidrec.models._sid_embedding import HierarchicalSidEmbedding, SidEmbedding
from sidrec.models._tags import has_tag_text, tag_path_texts

__all__ = [
    "HIDVAE_RECOMMENDER",
    "TIGER_CPU",
    "TIGER_SMALL",
    "Tiger",
    "TigerConfig",
    "TigerState",
    "has_tag_text",
    "hash_users",
    "hidvae_recommender",
    "tag_path_texts",
    "tiger",
    "tiger_small",
]


@dataclass(frozen=True)
class TigerConfig:
    num_items: int  # N
    codebook_sizes: tuple[int, ...]  # K_l for each of the L' decoded levels
    num_encoder_layers: int
    num_decoder_layers: int
    d_model: int
    num_heads: int
    head_dim: int
    ffn_dim: int
    dropout: float
    num_user_tokens: int  # hashed user ids (TIGER §4.1: 2000 buckets)
    max_history: int  # most recent items the encoder reads
    hierarchy_aware: bool  # HiD-VAE SID embeddings (needs tag text)
    text_dim: int  # width of the frozen tag-path embeddings; 0 when not hierarchy-aware

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if self.hierarchy_aware and self.text_dim < 1:
            raise ValueError(
                "hierarchy_aware=True needs tag-path text embeddings (text_dim >= 1); "
                "the SID table has no tag text: set hierarchy_aware=False"
            )

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tiger(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    *,
    num_encoder_layers: int,
    num_decoder_layers: int,
    d_model: int,
    num_heads: int,
    head_dim: int,
    ffn_dim: int,
    dropout: float,
    num_user_tokens: int,
    max_history: int,
    hierarchy_aware: bool,
    tag_text: Tensor | None = None,
) -> Tiger:
    """item_codes: [N x L'] the full SID of each item (`SidTable.full_codes()`);
    tag_text: [V x text_dim] tag-path embeddings, required when hierarchy_aware."""
    item_codes = torch.as_tensor(item_codes, dtype=torch.long)
    text_dim = 0 if tag_text is None or not hierarchy_aware else int(tag_text.shape[1])
    cfg = TigerConfig(
        num_items=item_codes.shape[0],
        codebook_sizes=tuple(codebook_sizes),
        num_encoder_layers=num_encoder_layers,
        num_decoder_layers=num_decoder_layers,
        d_model=d_model,
        num_heads=num_heads,
        head_dim=head_dim,
        ffn_dim=ffn_dim,
        dropout=dropout,
        num_user_tokens=num_user_tokens,
        max_history=max_history,
        hierarchy_aware=hierarchy_aware,
        text_dim=text_dim,
    )
    model = Tiger(cfg)
    model.set_item_codes(item_codes)
    if text_dim:
        model.sid_embedding.set_text(torch.as_tensor(tag_text, dtype=torch.float32))
    return model


TIGER_SMALL = MappingProxyType(
    dict(
        num_encoder_layers=4,
        num_decoder_layers=4,
        d_model=128,
        num_heads=6,
        head_dim=64,
        ffn_dim=1024,
        dropout=0.1,
        num_user_tokens=2000,
        max_history=20,
    )
)  # tiger_small()'s architecture (every value; run_config reads it)


def tiger_small(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    tag_text: Tensor | None = None,
    hierarchy_aware: bool = False,
) -> Tiger:
    """TIGER's recommender (§4.1): 4 + 4 layers, d_model 128, 6 heads x 64, FFN 1024,
    dropout 0.1, 2000 user buckets; history 20 items as on Beauty."""
    return tiger(
        item_codes,
        codebook_sizes,
        **TIGER_SMALL,
        hierarchy_aware=hierarchy_aware,
        tag_text=tag_text,
    )


TIGER_CPU = MappingProxyType(
    dict(
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_model=64,
        num_heads=2,
        head_dim=32,
        ffn_dim=256,
        dropout=0.1,
        num_user_tokens=2000,
        max_history=20,
    )
)  # tiger_cpu()'s architecture (every value; run_config reads it)


def tiger_cpu(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    tag_text: Tensor | None = None,
    hierarchy_aware: bool = False,
) -> Tiger:
    """A CPU-sized TIGER for laptop runs and smoke figures (jobs/train_lamia.py's
    default): 2 + 2 layers, d_model 64, 2 heads x 32, FFN 256. A valid pass over
    4,000 users with beam 20 takes well under a minute on 2 cores; it is not a
    quality setting (tiger_small is)."""
    return tiger(
        item_codes,
        codebook_sizes,
        **TIGER_CPU,
        hierarchy_aware=hierarchy_aware,
        tag_text=tag_text,
    )


HIDVAE_RECOMMENDER = MappingProxyType(
    dict(
        num_encoder_layers=6,
        num_decoder_layers=6,
        d_model=512,
        num_heads=8,
        head_dim=64,
        ffn_dim=2048,
        dropout=0.1,
        num_user_tokens=2000,
        max_history=20,
    )
)  # hidvae_recommender()'s architecture (every value; run_config reads it)


def hidvae_recommender(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    tag_text: Tensor | None = None,
    hierarchy_aware: bool = True,
) -> Tiger:
    """HiD-VAE's recommender (App. C.2): 6 + 6 layers, 8 heads, d_model 512.

    head_dim 64 (= 512 / 8) and FFN 2048 (4 x d) are the Transformer defaults,
    the paper does not state them; dropout 0.1 and 2000 user buckets as TIGER.
    """
    return tiger(
        item_codes,
        codebook_sizes,
        **HIDVAE_RECOMMENDER,
        hierarchy_aware=hierarchy_aware,
        tag_text=tag_text,
    )


def hash_users(users: Tensor, num_buckets: int) -> Tensor:
    """[b] user ids -> bucket in [0, num_buckets]; -1 (unknown user) -> num_buckets.

    Knuth's multiplicative hash: spreads any id space (not only dense ids)."""
    users = users.long()
    buckets = (users * 2654435761) % (1 << 32) % num_buckets
    return torch.where(users >= 0, buckets, torch.full_like(buckets, num_buckets))


class TigerState(NamedTuple):
    """What the beam search carries between steps (opaque to it).

    memory_k/v: per decoder layer [b x h x S x dh], the encoder output projected
        once per *user*; never copied per beam (rows are batch-major).
    memory_mask: [b x 1 x 1 x S] bool (False = history padding) or None.
    self_k/v: per decoder layer [rows x h x t x dh], the self-attention cache.
    """

    memory_k: tuple[Tensor, ...]
    memory_v: tuple[Tensor, ...]
    memory_mask: Tensor | None
    self_k: tuple[Tensor, ...]
    self_v: tuple[Tensor, ...]


class DecoderBlock(nn.Module):
    """Pre-LN: causal self-attention, cross-attention to the encoder, FFN."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = Attention(d_model, num_heads, head_dim, dropout)
        self.cross_attn = Attention(d_model, num_heads, head_dim, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mk: Tensor, mv: Tensor, memory_mask: Tensor | None) -> Tensor:
        """Teacher forcing. x: [b x L' x d]; mk, mv: [b x h x S x dh]."""
        x = x + self.drop(self.self_attn(self.ln1(x), causal=True))
        x = x + self.drop(self.cross_attn.attend(self.ln2(x), mk, mv, memory_mask))
        return x + self.drop(self.ffn(self.ln3(x)))

    def step(
        self, x: Tensor, k: Tensor, v: Tensor, mk: Tensor, mv: Tensor, memory_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One new position. x: [rows x 1 x d]; k, v: [rows x h x t x dh] cache;
        mk, mv: [b x h x S x dh] with rows = b * w, batch-major."""
        h = self.ln1(x)
        k_new, v_new = self.self_attn.project_kv(h)
        k, v = torch.cat([k, k_new], 2), torch.cat([v, v_new], 2)
        x = x + self.self_attn.attend(h, k, v)  # every cached key is in the past: no mask
        rows, b = x.shape[0], mk.shape[0]
        # Cross-attention grouped by user: [b*w x 1 x d] -> [b x w x d] queries, one memory per user.
        q = self.ln2(x).reshape(b, rows // b, -1)
        x = x + self.cross_attn.attend(q, mk, mv, memory_mask).reshape(rows, 1, -1)
        return x + self.ffn(self.ln3(x)), k, v


class Tiger(nn.Module):
    def __init__(self, cfg: TigerConfig):
        super().__init__()
        self.cfg = cfg
        d, sizes = cfg.d_model, cfg.codebook_sizes
        self.register_buffer(
            "item_codes", torch.zeros(cfg.num_items, cfg.num_levels, dtype=torch.long)
        )
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # [L'] token = offset + code
        if cfg.hierarchy_aware:
            self.sid_embedding = HierarchicalSidEmbedding(sizes, d, cfg.text_dim)
        else:
            self.sid_embedding = SidEmbedding(sizes, d)
        self.users = nn.Embedding(cfg.num_user_tokens + 1, d)  # + 1: unknown user
        self.enc_positions = nn.Embedding(cfg.max_history * cfg.num_levels, d)
        self.dec_positions = nn.Embedding(cfg.num_levels, d)
        self.bos = nn.Parameter(torch.zeros(d))
        for p in (
            self.users.weight,
            self.enc_positions.weight,
            self.dec_positions.weight,
            self.bos,
        ):
            nn.init.normal_(p, std=0.02)
        block = (d, cfg.num_heads, cfg.head_dim, cfg.ffn_dim, cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(*block) for _ in range(cfg.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(*block) for _ in range(cfg.num_decoder_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in sizes)

    def set_item_codes(self, item_codes: Tensor) -> None:
        """item_codes: [N x L'], row i = item i's full SID."""
        codes = torch.as_tensor(item_codes, dtype=torch.long)
        if codes.shape != self.item_codes.shape:
            raise ValueError(
                f"item_codes: expected {tuple(self.item_codes.shape)}, got {tuple(codes.shape)}"
            )
        sizes = torch.tensor(self.cfg.codebook_sizes)
        if bool(((codes < 0) | (codes >= sizes)).any()):
            raise ValueError(
                f"item_codes: codes outside codebook_sizes {list(self.cfg.codebook_sizes)}"
            )
        with torch.no_grad():
            self.item_codes.copy_(codes)

    # ---- encoder ---------------------------------------------------------------
    def encode_memory(
        self, history: Tensor, users: Tensor, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """history: [b x s] item ids, oldest first, left-padded with -1 (s <= max_history);
        users: [b] ids (-1 = unknown); valid: [b x s] bool, None = no padding.

        Returns memory [b x S x d] (S = 1 + s*L') and its key mask [b x 1 x 1 x S] or None.
        """
        b, s = history.shape
        if s > self.cfg.max_history:
            raise ValueError(
                f"history: {s} items > max_history {self.cfg.max_history}; keep the last ones"
            )
        levels = self.cfg.num_levels
        codes = self.item_codes[history.clamp(min=0)]  # [b x s x L']
        x = self.sid_embedding(codes + self.offsets).flatten(1, 2)  # [b x s*L' x d]
        # Positions count back from the most recent code: flip of the first s*L' rows.
        x = x + self.enc_positions.weight[: s * levels].flip(0)
        u = self.users(hash_users(users, self.cfg.num_user_tokens))[:, None]  # [b x 1 x d]
        x = self.drop(torch.cat([u, x], 1))
        mask = None
        if valid is not None:  # keys: the user token always, codes of real items
            keys = torch.cat([valid.new_ones(b, 1), valid.repeat_interleave(levels, 1)], 1)
            mask = keys[:, None, None, :]
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_ln(x), mask

    # ---- training --------------------------------------------------------------
    def forward(
        self, history: Tensor, users: Tensor, targets: Tensor, valid: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced loss: mean over levels of the cross-entropy of each code of
        the target item. history: [b x s]; users, targets: [b]; valid as in encode_memory."""
        logits = self.logits(history, users, targets, valid)
        codes = self.item_codes[targets]  # [b x L']
        losses = [F.cross_entropy(lg.float(), codes[:, t]) for t, lg in enumerate(logits)]
        return torch.stack(losses).mean()

    def logits(
        self, history: Tensor, users: Tensor, targets: Tensor, valid: Tensor | None = None
    ) -> list[Tensor]:
        """Teacher-forced logits, one [b x K_t] per level t."""
        memory, mask = self.encode_memory(history, users, valid)
        codes = self.item_codes[targets]  # [b x L']
        prev = self.sid_embedding(codes[:, :-1] + self.offsets[:-1])  # [b x L'-1 x d]
        x = torch.cat([self.bos.expand(codes.shape[0], 1, -1), prev], 1)
        x = self.drop(x + self.dec_positions.weight)
        for block in self.decoder:
            mk, mv = block.cross_attn.project_kv(memory)
            x = block(x, mk, mv, mask)
        h = self.dec_ln(x)
        return [head(h[:, t]) for t, head in enumerate(self.heads)]

    # ---- inference: the DecoderStep protocol of sidrec.decoding ----------------
    @torch.no_grad()
    def encode(self, history: Tensor, users: Tensor, valid: Tensor | None = None) -> TigerState:
        """The beam search's initial state for b users (encoder run once)."""
        memory, mask = self.encode_memory(history, users, valid)
        mk, mv = zip(*(block.cross_attn.project_kv(memory) for block in self.decoder), strict=True)
        empty = tuple(k[:, :, :0] for k in mk)  # [b x h x 0 x dh]
        return TigerState(tuple(mk), tuple(mv), mask, empty, empty)

    @torch.no_grad()
    def step(self, tokens: Tensor, state: TigerState) -> tuple[Tensor, TigerState]:
        """tokens: [rows x t] codes chosen so far -> logits [rows x K_t], new state."""
        rows, t = tokens.shape
        if t == 0:
            x = self.bos.expand(rows, 1, -1)
        else:
            x = self.sid_embedding(tokens[:, -1:] + self.offsets[t - 1])  # [rows x 1 x d]
        x = x + self.dec_positions.weight[t]
        ks, vs = [], []
        for i, block in enumerate(self.decoder):
            x, k, v = block.step(
                x,
                state.self_k[i],
                state.self_v[i],
                state.memory_k[i],
                state.memory_v[i],
                state.memory_mask,
            )
            ks.append(k)
            vs.append(v)
        logits = self.heads[t](self.dec_ln(x[:, 0]))
        return logits, state._replace(self_k=tuple(ks), self_v=tuple(vs))

    def reorder(self, state: TigerState, index: Tensor) -> TigerState:
        """Row i of the new state = row index[i]; only the per-beam cache moves."""
        return state._replace(
            self_k=tuple(k[index] for k in state.self_k),
            self_v=tuple(v[index] for v in state.self_v),
        )
