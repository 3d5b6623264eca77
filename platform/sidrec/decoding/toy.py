"""Deterministic random decoders and SID tables for tests, benchmarks and smoke tests.

They implement `DecoderStep` with untrained random weights: no recommender
quality, only shapes, determinism and a KV-cache-like state that must be
reordered correctly.

- `ToyRNNDecoder`: tiny (dim 8); its state is a recurrent hidden vector plus a
  growing cache of fed-token embeddings, and the logits read both, so a beam
  that continues from the wrong parent's state changes the result.
- `ToyTransformerDecoder`: TIGER-sized decoder step (d_model 128, 4 layers,
  6 heads x 64, FFN 1024; TIGER §4.1) with a self-attention KV cache and
  cross-attention to a random encoder memory, for realistic timings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn


def random_sid_table(num_items: int, codebook_sizes: Sequence[int], seed: int = 0) -> Tensor:
    """[num_items x L] long, distinct random SIDs (row order random)."""
    gen = torch.Generator().manual_seed(seed)
    total = math.prod(codebook_sizes)
    if num_items > total:
        raise ValueError(
            f"num_items: {num_items} > {total} distinct SIDs of sizes {list(codebook_sizes)}"
        )
    if total <= max(4 * num_items, 1 << 16):  # dense space: sample without replacement
        flat = torch.randperm(total, generator=gen)[:num_items]
        return _unflatten(flat, codebook_sizes)
    rows = torch.zeros(0, len(codebook_sizes), dtype=torch.long)
    while rows.shape[0] < num_items:  # sparse space: draw, drop repeats, top up
        draw = torch.stack(
            [torch.randint(k, (num_items,), generator=gen) for k in codebook_sizes], 1
        )
        rows = torch.cat([rows, draw])
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), rows.shape[0]).scatter_reduce(
            0, inverse, torch.arange(rows.shape[0]), "amin"
        )
        rows = rows[first.sort().values]  # keep first occurrences, in draw order
    return rows[:num_items]


def _unflatten(flat: Tensor, sizes: Sequence[int]) -> Tensor:
    cols = []
    for k in reversed(sizes):
        cols.append(flat % k)
        flat = flat // k
    return torch.stack(cols[::-1], 1)


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=gen) * scale


class ToyState(NamedTuple):
    hidden: Tensor  # [rows x d] recurrent state
    cache: Tensor  # [rows x t x d] embeddings of the tokens fed so far (KV-cache-like)


class ToyRNNDecoder:
    """Random embedding + tanh RNN cell + per-level linear heads.

    step reads only tokens[:, -1] and the state, so the result depends on the
    state being reordered with the beams. scale multiplies the logits (large
    scale: peaked, near-deterministic distributions).
    """

    def __init__(
        self, codebook_sizes: Sequence[int], dim: int = 8, seed: int = 0, scale: float = 1.0
    ):
        gen = torch.Generator().manual_seed(seed)
        self.sizes = list(codebook_sizes)
        self.bos = _randn(gen, dim)
        self.embed = [_randn(gen, k, dim) for k in self.sizes]  # level l's code embeddings
        self.w_in = _randn(gen, dim, dim, scale=dim**-0.5)
        self.w_h = _randn(gen, dim, dim, scale=dim**-0.5)
        self.heads = [_randn(gen, dim, k, scale=scale) for k in self.sizes]
        self.users = _randn(gen, 97, dim)  # user id -> initial hidden (hashed: id % 97)

    def init_state(self, users: Tensor) -> ToyState:
        """State for users: [b] (any ints)."""
        hidden = self.users[users.long() % self.users.shape[0]]
        return ToyState(hidden, hidden.new_zeros(hidden.shape[0], 0, hidden.shape[1]))

    def step(self, tokens: Tensor, state: ToyState) -> tuple[Tensor, ToyState]:
        t = tokens.shape[1]
        if t == 0:
            x = self.bos.expand(tokens.shape[0], -1)
        else:
            x = self.embed[t - 1][tokens[:, -1]]
        cache = torch.cat([state.cache, x[:, None]], 1)
        hidden = torch.tanh(x @ self.w_in + state.hidden @ self.w_h)
        logits = (hidden + cache.mean(1)) @ self.heads[t]
        return logits, ToyState(hidden, cache)

    def reorder(self, state: ToyState, index: Tensor) -> ToyState:
        return ToyState(state.hidden[index], state.cache[index])


class TransformerState(NamedTuple):
    memory_k: list[Tensor]  # per layer [b x S x h x dh], one per *user*, never copied per beam
    memory_v: list[Tensor]
    self_k: list[Tensor]  # per layer [rows x t x h x dh], the self-attention KV cache
    self_v: list[Tensor]


class _Layer(nn.Module):
    """Pre-LN decoder layer: causal self-attention (cached), cross-attention, FFN."""

    def __init__(self, d: int, heads: int, head_dim: int, ffn: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * inner)
        self.out1 = nn.Linear(inner, d)
        self.q2 = nn.Linear(d, inner)
        self.kv2 = nn.Linear(d, 2 * inner)  # applied once to the encoder memory
        self.out2 = nn.Linear(inner, d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Linear(ffn, d))

    def split(self, x: Tensor) -> Tensor:
        """[... x n*dh] -> [... x n x dh] (n = heads, or 2-3x heads for fused projections)."""
        return x.reshape(*x.shape[:-1], -1, self.head_dim)

    def forward(self, x: Tensor, mk: Tensor, mv: Tensor, sk: Tensor, sv: Tensor):
        """x: [rows x d]; mk, mv: [b x S x h x dh]; sk, sv: [rows x t x h x dh]."""
        q, k, v = self.split(self.qkv(self.ln1(x))).chunk(3, dim=-2)  # [rows x h x dh] each
        sk, sv = torch.cat([sk, k[:, None]], 1), torch.cat([sv, v[:, None]], 1)
        att = torch.einsum("rhd,rthd->rht", q, sk).mul(self.head_dim**-0.5).softmax(-1)
        x = x + self.out1(torch.einsum("rht,rthd->rhd", att, sv).flatten(1))
        # Cross-attention grouped by user: rows are batch-major, so [rows] -> [b x w].
        b = mk.shape[0]
        q = self.split(self.q2(self.ln2(x))).reshape(b, -1, self.heads, self.head_dim)
        att = torch.einsum("bwhd,bshd->bwhs", q, mk).mul(self.head_dim**-0.5).softmax(-1)
        x = x + self.out2(torch.einsum("bwhs,bshd->bwhd", att, mv).reshape(x.shape[0], -1))
        return x + self.ffn(self.ln3(x)), sk, sv


class ToyTransformerDecoder(nn.Module):
    """TIGER-sized decoder step over a random encoder memory (for benchmarks).

    Its reorder moves only the self-attention cache: it relies on the search's
    batch-major row layout (see `beam`), so run the reference one user at a time.
    """

    def __init__(
        self,
        codebook_sizes: Sequence[int],
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 6,
        head_dim: int = 64,
        ffn_dim: int = 1024,
        memory_len: int = 61,
        seed: int = 0,
    ):
        """Builder values are TIGER's decoder (tiger_small); memory_len = 20 items x 3 codes + user."""
        super().__init__()
        self.memory_len, self.d_model, self.seed = memory_len, d_model, seed
        # Seeded without touching the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.bos = nn.Parameter(torch.randn(d_model))
            self.embed = nn.ModuleList(nn.Embedding(k, d_model) for k in codebook_sizes)
            self.layers = nn.ModuleList(
                _Layer(d_model, num_heads, head_dim, ffn_dim) for _ in range(num_layers)
            )
            self.ln = nn.LayerNorm(d_model)
            self.heads = nn.ModuleList(nn.Linear(d_model, k) for k in codebook_sizes)
            # user id -> a random "encoder output" (hashed: id % 97)
            self.register_buffer("users", torch.randn(97, memory_len, d_model))
        self.eval()

    @torch.no_grad()
    def init_state(self, users: Tensor) -> TransformerState:
        """State for users: [b]: their encoder memory, projected to K/V once per layer."""
        memory = self.users[users.long() % self.users.shape[0]]  # [b x S x d]
        batch_size = memory.shape[0]
        mk, mv = [], []
        for layer in self.layers:
            k, v = layer.split(layer.kv2(memory)).chunk(2, dim=-2)
            mk.append(k.contiguous())
            mv.append(v.contiguous())
        empty = [mk[0].new_zeros(batch_size, 0, *mk[0].shape[2:]) for _ in self.layers]
        return TransformerState(mk, mv, empty, list(empty))

    @torch.no_grad()
    def step(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        t = tokens.shape[1]
        # The code fed at level t is the one chosen at level t-1 (BOS at t=0).
        if t == 0:
            x = self.bos.expand(tokens.shape[0], -1)
        else:
            x = self.embed[t - 1](tokens[:, -1])
        sk, sv = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(
                x, state.memory_k[i], state.memory_v[i], state.self_k[i], state.self_v[i]
            )
            sk.append(k)
            sv.append(v)
        logits = self.heads[t](self.ln(x))
        return logits, TransformerState(state.memory_k, state.memory_v, sk, sv)

    def reorder(self, state: TransformerState, index: Tensor) -> TransformerState:
        # Only the per-beam KV cache moves; the per-user memory stays [b x ...].
        return TransformerState(
            state.memory_k,
            state.memory_v,
            [k[index] for k in state.self_k],
            [v[index] for v in state.self_v],
        )
