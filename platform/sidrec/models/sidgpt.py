"""SID-GPT: a decoder-only generative recommender over semantic IDs.

TIGER (Rajput et al., NeurIPS 2023, §3.2) encodes a user's history and
*decodes* the next item's SID with an encoder-decoder, trained on every
prefix of the sequence: 131k encoder passes and 4.2 M encoder tokens per
Beauty epoch. SID-GPT reads the whole sequence once, causally, and is
trained with a loss at every item's codes: one pass per user per epoch.

    input    each history item i is the sum of its L' code embeddings
             sum_l E[offset_l + c^i_l] (scaled by sqrt(d), as SASRec scales ids);
             hierarchy-aware code embeddings (HiD-VAE §4.2.7) are a switch;
             `id_inputs` adds a learned row per item, E_id[i], as H2Rec's
             hash-ID branch does (SIDs share rows across near-duplicates, an
             id row tells them apart); the model still generates SIDs;
             `id_dropout` drops a position's id row in training, so the body
             cannot lean on the ids alone;
    body     a causal pre-LN transformer over the item positions; h_t
             summarizes items <= t. Positions count forward from the first item
             the model reads, so the output at t is the same whether the
             sequence goes on or stops at t: a whole-sequence pass gives every
             prefix's prediction, exactly (unlike SASRec's count-back positions);
    head     the next item's codes, level by level (a factorized softmax):
             z_l = h_t + sqrt(d) sum_{j<l} E[c_j]  ->  LN -> residual FFN_l ->
             logits_l = z_l . E_l^T + b_l   (tied to the input code table).
             log p(item) = sum_l log softmax(logits_l)[c_l], the joint
             probability TIGER and HiD-VAE rank by. With `trie_softmax` (the
             default) each softmax runs over the codes the SID trie allows
             after the prefix: a hierarchical softmax over the catalog. TIGER
             trains over the whole codebook, so its decoder must also learn
             which of the 256^3 SIDs exist; at (c_0, c_1) most Beauty prefixes
             hold one item, and that lookup cost the full-codebook head a third
             of its valid NDCG (docs/RESULTS_recommender.md).

Training = teacher forcing with the true codes of each next item (`seen_penalty`
adds the unlikelihood of items already read: models/_unlikelihood.py). At
inference the body runs once per user and `sidrec.decoding.
constrained_beam_search` drives the head through `step` / `reorder` (the
`DecoderStep` protocol): the per-user state (h_t, the cache of the history)
is computed once and never copied per beam; a beam only carries its prefix
sum, so decoding costs L' small head steps whatever the history length.

Why items, not flattened codes, as body positions: a sequence of s items is s
positions instead of s x L', so attention and the FFNs run on 4x fewer tokens
and an epoch costs what SASRec's does (docs/RESULTS_recommender.md); the
next item's codes are still generated one level at a time, conditioned on
the codes already chosen.

    model = sidgpt_beauty(item_codes, codebook_sizes)     # item_codes: [N x L']
    loss = model(inputs, targets)                         # [b x s] item ids each
    state = model.encode(history)                         # then beam search:
    constrained_beam_search(model, b, trie, beam_width=20, topk=20, state=state)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidrec.decoding._csr import code_dtype, index_dtype
from sidrec.decoding.trie import SidTrie, item_nodes
from sidrec.models._layers import EncoderBlock, FeedForward, padding_mask
from sidrec.models._sid_embedding import HierarchicalSidEmbedding, SidEmbedding
from sidrec.models._unlikelihood import SEEN_EVERY, read_unlikelihood, sample_read_items

__all__ = [
    "SIDGPT_BEAUTY",
    "SIDGPT_SMALL",
    "SidGPT",
    "SidGPTConfig",
    "SidGPTState",
    "sidgpt",
    "sidgpt_beauty",
    "sidgpt_small",
]


@dataclass(frozen=True)
class SidGPTConfig:
    num_items: int  # N
    codebook_sizes: tuple[int, ...]  # K_l for each of the L' decoded levels
    d_model: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    dropout: float
    max_len: int  # most recent items the body reads (and trains on) per user
    # The code head's FFN dropout: low, whatever the body's (SASRec's 0.5 on
    # Beauty regularizes 12k id rows; the head only refines a code choice).
    head_dropout: float = 0.1
    # Each level's softmax over the codes the trie allows after the prefix (a
    # hierarchical softmax over the catalog: the item probabilities sum to 1),
    # not over the whole codebook. The model then never spends capacity on
    # learning which SIDs exist, which the trie already knows (§ "head" above).
    trie_softmax: bool = True
    hierarchy_aware: bool = False  # HiD-VAE code embeddings (needs tag text)
    text_dim: int = 0  # width of the frozen tag-path embeddings; 0 when not hierarchy-aware
    # Add a learned per-item row to each history item's input (§ "input" above): the
    # output stays SID generation over the trie. N x d more parameters (1M items at
    # d 128: 0.5 GB), so off by default.
    id_inputs: bool = False
    # In training, drop each history position's id row with this probability (zeroed,
    # not rescaled: the row keeps its scale against the code rows, and is always there
    # at inference), so the body keeps reading the codes. Only with id_inputs.
    id_dropout: float = 0.0
    # Weight of the unlikelihood of items the user has read (`_unlikelihood.py`; 0 = off).
    seen_penalty: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if self.num_items < 1 or self.max_len < 1 or not self.codebook_sizes:
            raise ValueError(f"need num_items, max_len >= 1 and >= 1 level, got {self}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} must divide by num_heads {self.num_heads}")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"id_dropout={self.id_dropout!r} is a probability: must be in [0, 1)")
        if self.seen_penalty < 0:
            raise ValueError(f"seen_penalty must be >= 0, got {self.seen_penalty}")
        if self.id_dropout and not self.id_inputs:
            raise ValueError(f"id_dropout={self.id_dropout!r} drops id rows: set id_inputs=True")
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


def sidgpt(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    *,
    d_model: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    dropout: float,
    max_len: int,
    head_dropout: float = 0.1,
    trie_softmax: bool = True,
    hierarchy_aware: bool = False,
    tag_text: Tensor | None = None,
    id_inputs: bool = False,
    id_dropout: float = 0.0,
    seen_penalty: float = 0.0,
) -> SidGPT:
    """item_codes: [N x L'] the full SID of each item (`SidTable.full_codes()`);
    tag_text: [V x text_dim] tag-path embeddings, required when hierarchy_aware."""
    item_codes = torch.as_tensor(item_codes, dtype=torch.long)
    text_dim = 0 if tag_text is None or not hierarchy_aware else int(tag_text.shape[1])
    cfg = SidGPTConfig(
        num_items=item_codes.shape[0],
        codebook_sizes=tuple(codebook_sizes),
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        ffn_dim=ffn_dim,
        dropout=dropout,
        max_len=max_len,
        head_dropout=head_dropout,
        trie_softmax=trie_softmax,
        hierarchy_aware=hierarchy_aware,
        text_dim=text_dim,
        id_inputs=id_inputs,
        id_dropout=id_dropout,
        seen_penalty=seen_penalty,
    )
    model = SidGPT(cfg)
    model.set_item_codes(item_codes)
    if text_dim:
        model.sid_embedding.set_text(torch.as_tensor(tag_text, dtype=torch.float32))
    return model


SIDGPT_BEAUTY = MappingProxyType(
    dict(
        d_model=64,
        num_layers=2,
        num_heads=1,
        ffn_dim=64,
        dropout=0.3,
        max_len=50,
    )
)  # sidgpt_beauty()'s architecture (every value; run_config reads it)


def sidgpt_beauty(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    tag_text: Tensor | None = None,
    hierarchy_aware: bool = False,
) -> SidGPT:
    """The Beauty setting: SASRec's body (d 64, 2 layers, 1 head, FFN 64, 50 items;
    `sidrec.models.sasrec.sasrec_beauty`), so the comparison with the ID model
    isolates what SIDs change, but dropout 0.3, not SASRec's 0.5: the SID inputs
    share ~800 code rows instead of 12k id rows, and on valid 0.3 won (R@10 .0779
    at epoch 39 vs .0758 at epoch 75; docs/RESULTS_recommender.md). Recipe:
    `SIDGPT_RECIPE`."""
    return sidgpt(
        item_codes,
        codebook_sizes,
        **SIDGPT_BEAUTY,
        hierarchy_aware=hierarchy_aware,
        tag_text=tag_text,
    )


SIDGPT_SMALL = MappingProxyType(
    dict(
        d_model=128,
        num_layers=4,
        num_heads=2,
        ffn_dim=256,
        dropout=0.3,
        max_len=50,
    )
)  # sidgpt_small()'s architecture (every value; run_config reads it)


def sidgpt_small(
    item_codes: Tensor,
    codebook_sizes: Sequence[int],
    tag_text: Tensor | None = None,
    hierarchy_aware: bool = False,
) -> SidGPT:
    """A wider body (d 128, 4 layers, 2 heads, FFN 256, dropout 0.3) for catalogs and
    budgets larger than Beauty on 2 cores."""
    return sidgpt(
        item_codes,
        codebook_sizes,
        **SIDGPT_SMALL,
        hierarchy_aware=hierarchy_aware,
        tag_text=tag_text,
    )


class SidGPTState(NamedTuple):
    """What the beam search carries between steps (opaque to it).

    user: [b x d] the body's output after each history (computed once per user;
        rows are batch-major, so it is never copied per beam).
    prefix: [rows x d] the sum of the code embeddings each beam has chosen.
    nodes: [rows] the trie node each beam's prefix reaches (-1: none).
    """

    user: Tensor
    prefix: Tensor
    nodes: Tensor


class SidGPT(nn.Module):
    def __init__(self, cfg: SidGPTConfig):
        super().__init__()
        self.cfg = cfg
        d, sizes = cfg.d_model, cfg.codebook_sizes
        # The trie's code dtype (uint8 for K <= 256): 1 byte a code, not 8; old int64
        # checkpoints load into it (load_state_dict casts). Index it with `codes_of`.
        self.register_buffer(
            "item_codes", torch.zeros(cfg.num_items, cfg.num_levels, dtype=code_dtype(sizes))
        )
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # token = offset + code
        if cfg.hierarchy_aware:
            self.sid_embedding = HierarchicalSidEmbedding(sizes, d, cfg.text_dim)
            # Starts as the plain table below (same Xavier rows, identity projection);
            # the level and tag-text terms grow in from zero (`start_as_plain`).
            nn.init.xavier_normal_(self.sid_embedding.codes.weight)
            self.sid_embedding.start_as_plain()
        else:
            self.sid_embedding = SidEmbedding(sizes, d)
            # Xavier rows as SASRec's item table: the sum of L' rows starts near unit scale.
            nn.init.xavier_normal_(self.sid_embedding.codes.weight)
        self.item_inputs = nn.Embedding(cfg.num_items, d) if cfg.id_inputs else None
        if self.item_inputs is not None:  # Xavier, as SASRec's item table
            nn.init.xavier_normal_(self.item_inputs.weight)
        self.positions = nn.Embedding(cfg.max_len, d)
        nn.init.xavier_normal_(self.positions.weight)
        self.blocks = nn.ModuleList(
            EncoderBlock(d, cfg.num_heads, d // cfg.num_heads, cfg.ffn_dim, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(d)
        self.head_ln = nn.ModuleList(nn.LayerNorm(d) for _ in sizes)
        self.head_ffn = nn.ModuleList(FeedForward(d, 4 * d, cfg.head_dropout) for _ in sizes)
        self.head_bias = nn.ParameterList(nn.Parameter(torch.zeros(k)) for k in sizes)
        # Built from item_codes on first use, or adopted from the bundle (`use_trie`).
        self._sid_trie: SidTrie | None = None
        self._item_nodes: Tensor | None = None  # training and log_prob only
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_trie())

    def _forget_trie(self) -> None:
        self._sid_trie = self._item_nodes = None

    def codes_of(self, items: Tensor) -> Tensor:
        """items [...] -> their SIDs [... x L'] as int64."""
        return self.item_codes[items].long()

    def use_trie(self, trie: SidTrie) -> None:
        """Decode with `trie`, a trie of exactly these item codes (the bundle's trie.pt),
        instead of building a second one at the first request. A replica calls it at
        load (`load_bundle`): at 1M items the first request spent ~1 s building it, and
        the int64 codes and node table took ~64 B/item (docs/SCALE.md)."""
        sizes = tuple(self.cfg.codebook_sizes)
        same = trie.codebook_sizes == sizes and trie.sids.shape == self.item_codes.shape
        if not same or not torch.equal(trie.sids.to(self.item_codes), self.item_codes):
            raise ValueError(
                f"use_trie: the trie's SIDs ({tuple(trie.sids.shape)}, codebook sizes "
                f"{list(trie.codebook_sizes)}) are not this model's item_codes "
                f"({tuple(self.item_codes.shape)}, {list(sizes)})"
            )
        # item_codes stays a table of its own (1 byte a code): sharing the trie's would
        # let load_state_dict overwrite the SIDs of a trie the Recommender still holds.
        self._sid_trie, self._item_nodes = trie.to(self.item_codes.device), None

    def sid_trie(self) -> SidTrie:
        """The SID trie on this model's device (built here unless `use_trie` gave one)."""
        device = self.item_codes.device
        if self._sid_trie is None:
            self._sid_trie = SidTrie.build(self.item_codes.cpu(), self.cfg.codebook_sizes)
        if self._sid_trie.device != device:
            self._sid_trie = self._sid_trie.to(device)
        return self._sid_trie

    def trie(self) -> tuple[SidTrie, Tensor]:
        """The SID trie on this model's device and [N x L'] the node each item's SID
        prefix reaches before each level (column 0: the root), int32 below 2^31 nodes.
        The node table serves teacher forcing (training, log_prob), not the beam search."""
        trie = self.sid_trie()
        if self._item_nodes is None or self._item_nodes.device != trie.device:
            nodes = item_nodes(trie, self.item_codes)
            self._item_nodes = nodes.to(index_dtype(trie.num_items + 1))
        return trie, self._item_nodes

    def _mask(self, level: int, logits: Tensor, nodes: Tensor) -> Tensor:
        """logits [... x K] with -inf where the trie disallows a code after nodes [...]."""
        if not self.cfg.trie_softmax:
            return logits
        trie = self.sid_trie()
        allowed = trie.allowed_mask(level, nodes.reshape(-1)).reshape(logits.shape)
        return logits.masked_fill(~allowed, float("-inf"))

    def set_item_codes(self, item_codes: Tensor) -> None:
        """item_codes: [N x L'], row i = item i's full SID."""
        codes = torch.as_tensor(item_codes).long()
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
        self._forget_trie()

    # ---- body --------------------------------------------------------------------
    def hidden(self, inputs: Tensor, valid: Tensor | None = None) -> Tensor:
        """inputs: [b x s] item ids, oldest first, left-padded with -1 (s <= max_len)
        -> [b x s x d]; valid: [b x s] bool (False = padding), None = no padding."""
        s = inputs.shape[1]
        if s > self.cfg.max_len:
            raise ValueError(
                f"inputs: {s} positions > max_len {self.cfg.max_len}; keep the last ones"
            )
        table = self.sid_embedding.table()  # [V x d], computed once per forward
        items = inputs.clamp(min=0)
        x = F.embedding(self.codes_of(items) + self.offsets, table).sum(2)  # [b x s x d]
        if self.item_inputs is not None:
            x = x + self._id_rows(items)
        x = x * math.sqrt(self.cfg.d_model)
        if valid is None:
            pos = self.positions.weight[:s]  # [s x d]
        else:  # count from each row's first real item: left padding moves nothing
            x = x * valid[..., None]
            pos = self.positions((valid.long().cumsum(1) - 1).clamp(min=0))  # [b x s x d]
        x = self.drop(x + pos)
        mask = None if valid is None else padding_mask(valid, causal=True)
        for block in self.blocks:
            x = block(x, mask, causal=mask is None)
        return self.ln(x)

    def _id_rows(self, items: Tensor) -> Tensor:
        """[b x s x d] the items' id rows; in training each is dropped with id_dropout."""
        rows = self.item_inputs(items)
        if not (self.training and self.cfg.id_dropout):
            return rows
        keep = torch.rand(items.shape, device=items.device) >= self.cfg.id_dropout
        return rows * keep[..., None].to(rows.dtype)

    # ---- head --------------------------------------------------------------------
    def level_logits(self, level: int, h: Tensor, prefix: Tensor, table: Tensor) -> Tensor:
        """Logits [... x K_level] of the code at `level`. h: [... x d] body outputs;
        prefix: [... x d] the sum of the embeddings of the codes chosen before it."""
        # The prefix is scaled as the body's input is: unscaled code rows are ~1/sqrt(d)
        # of a LayerNorm output, and the head would all but ignore the codes chosen.
        z = self.head_ln[level](h + prefix * math.sqrt(self.cfg.d_model))
        z = z + self.head_ffn[level](z)
        lo = int(self.offsets[level])
        codes = table[lo : lo + self.cfg.codebook_sizes[level]]  # [K x d], tied to the input
        return z @ codes.T + self.head_bias[level]

    def code_logits(self, h: Tensor, target_items: Tensor) -> list[Tensor]:
        """Teacher-forced logits, one [... x K_l] per level (-inf where the trie
        disallows a code, with trie_softmax). h: [... x d] body outputs;
        target_items: [...] the item each h predicts."""
        table = self.sid_embedding.table()
        codes = self.codes_of(target_items)  # [... x L']
        nodes = self.trie()[1][target_items].long() if self.cfg.trie_softmax else None
        prefix = torch.zeros_like(h)
        out = []
        for level in range(self.cfg.num_levels):
            logits = self.level_logits(level, h, prefix, table)
            out.append(logits if nodes is None else self._mask(level, logits, nodes[..., level]))
            prefix = prefix + F.embedding(codes[..., level] + self.offsets[level], table)
        return out

    # ---- training ----------------------------------------------------------------
    def forward(self, inputs: Tensor, targets: Tensor, valid: Tensor | None = None) -> Tensor:
        """Loss at every position: the mean over levels of each next item's code
        cross-entropy. inputs, targets: [b x s]; target t is the item after
        inputs[:, t]; -1 targets are ignored (padding). valid as in `hidden`."""
        h = self.hidden(inputs, valid).flatten(0, 1)  # [n x d]
        keep, items = targets.flatten() >= 0, targets.flatten().clamp(min=0)
        n, read = len(items), None
        if self.cfg.seen_penalty:  # read items' rows ride in the same head pass (fewer ops)
            positions, read = sample_read_items(inputs, targets, SEEN_EVERY)
            h, items = torch.cat([h, h[positions]]), torch.cat([items, read.clamp(min=0)])
        codes = self.codes_of(items)  # [n (+ k) x L']
        logits = self.code_logits(h, items)
        losses = [
            F.cross_entropy(lg[:n].float(), codes[:n, t].masked_fill(~keep, -1), ignore_index=-1)
            for t, lg in enumerate(logits)
        ]
        loss = torch.stack(losses).mean()
        if read is None:
            return loss
        read_logits = [lg[n:] for lg in logits]
        return loss + self.cfg.seen_penalty * read_unlikelihood(read_logits, codes[n:], read)

    @torch.no_grad()
    def log_prob(self, history: Tensor, candidates: Tensor, valid: Tensor | None = None) -> Tensor:
        """Exhaustive scoring: log p(item | history) for candidates [b x c] -> [b x c]
        (the sum over levels the beam search ranks by; used to check it)."""
        h = self.hidden(history, valid)[:, -1]  # [b x d]
        codes = self.codes_of(candidates)  # [b x c x L']
        hc = h[:, None].expand(-1, candidates.shape[1], -1)
        logits = self.code_logits(hc, candidates)
        return sum(
            lg.float().log_softmax(-1).gather(-1, codes[..., t : t + 1])[..., 0]
            for t, lg in enumerate(logits)
        )

    # ---- inference: the DecoderStep protocol of sidrec.decoding ------------------
    @torch.no_grad()
    def encode(
        self, history: Tensor, users: Tensor | None = None, valid: Tensor | None = None
    ) -> SidGPTState:
        """The beam search's initial state for b histories [b x s] (users: unused,
        accepted so every generative model is driven alike)."""
        history = history[:, -self.cfg.max_len :]
        if valid is not None:
            valid = valid[:, -self.cfg.max_len :]
        user = self.hidden(history, valid)[:, -1]  # [b x d]
        root = torch.zeros(user.shape[0], dtype=torch.long, device=user.device)
        return SidGPTState(user, torch.zeros_like(user), root)

    @torch.no_grad()
    def step(self, tokens: Tensor, state: SidGPTState) -> tuple[Tensor, SidGPTState]:
        """tokens: [rows x t] codes chosen so far -> logits [rows x K_t], new state."""
        rows, t = tokens.shape
        table = self.sid_embedding.table()
        prefix, nodes = state.prefix, state.nodes
        if t > 0:
            prefix = prefix + F.embedding(tokens[:, -1] + self.offsets[t - 1], table)
            if self.cfg.trie_softmax:
                nodes = self.sid_trie().child(t - 1, nodes, tokens[:, -1])
        b = state.user.shape[0]
        user = state.user.repeat_interleave(rows // b, 0)  # batch-major rows
        logits = self._mask(t, self.level_logits(t, user, prefix, table), nodes)
        return logits, state._replace(prefix=prefix, nodes=nodes)

    def reorder(self, state: SidGPTState, index: Tensor) -> SidGPTState:
        """Row i of the new state = row index[i]; only the per-beam prefix moves."""
        return state._replace(prefix=state.prefix[index], nodes=state.nodes[index])
