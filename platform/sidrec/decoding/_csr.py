"""Vectorized construction of the per-level CSR transition tables of a SID trie.

No Python dict trie and no loop over rows: the table is sorted
lexicographically once, and level l's nodes are the distinct length-l
prefixes, found by comparing each sorted row with the one before it. Cost:
one sort of packed row keys + O(N L) elementwise work (1M x 4 rows: ~1 s on
2 shared CPU cores). The tables are then stored in the smallest dtypes that
hold them (`code_dtype`, `index_dtype`), and looked up without any [n_l x K]
or per-edge key table (`csr_mask`, `find_edges`): memory stays O(N L) bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def check_table(
    codes: Tensor, codebook_sizes: int | Sequence[int]
) -> tuple[Tensor, tuple[int, ...]]:
    """Validate the SID table; return it as int64 and one codebook size per level."""
    t = torch.as_tensor(codes)
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"codes: expected a non-empty [N x L] table, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"codes: expected integer codes, got dtype {t.dtype}")
    t = t.long()
    levels = t.shape[1]
    sizes = [codebook_sizes] * levels if isinstance(codebook_sizes, int) else list(codebook_sizes)
    if len(sizes) != levels:
        raise ValueError(
            f"codebook_sizes: expected an int or {levels} sizes (one per level), got {len(sizes)}"
        )
    for level, k in enumerate(sizes):
        lo, hi = int(t[:, level].min()), int(t[:, level].max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"codes: level {level} holds codes {lo}..{hi}, outside its codebook [0, {k}) "
                "(codebook_sizes must match the model's output sizes)"
            )
    return t, tuple(int(k) for k in sizes)


def lexsort_rows(codes: Tensor, codebook_sizes: Sequence[int]) -> Tensor:
    """[N] permutation that sorts the rows of codes: [N x L] lexicographically (stable)."""
    if math.prod(codebook_sizes) < 2**62:
        # Mixed-radix packing: one int64 per row, one sort (4x faster than L sorts at 1M rows).
        keys = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for level, k in enumerate(codebook_sizes):
            keys = keys * k + codes[:, level]
        return torch.sort(keys, stable=True).indices
    # Would overflow int64: LSD radix order, stable-sort by the last column, then the one before...
    order = torch.arange(codes.shape[0], device=codes.device)
    for level in reversed(range(codes.shape[1])):
        order = order[torch.sort(codes[order, level], stable=True).indices]
    return order


def level_tables(sorted_codes: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per-level CSR tables of the trie of sorted_codes: [N x L], lexicographically sorted.

    Node ids are dense per level: level l holds one node per distinct length-l
    prefix, numbered in lexicographic order (level 0: the root, node 0).
    Returns, for each level l in 0..L-1:
      indptr[l]: [n_l + 1]  node n's edges are edge ids indptr[l][n] : indptr[l][n+1]
      edge_codes[l]: [n_{l+1}]  the code on each edge, ascending within a node
      edge_parent[l]: [n_{l+1}]  the node each edge leaves from
    An edge id at level l *is* the child's node id at level l+1 (both count the
    distinct length-(l+1) prefixes in the same order), so no child table is stored.
    """
    n = sorted_codes.shape[0]
    device = sorted_codes.device
    # new_prefix[i]: row i starts a new length-(l+1) prefix (differs from row i-1 in codes[:l+1])
    new_prefix = torch.zeros(n, dtype=torch.bool, device=device)
    new_prefix[0] = True
    parent = torch.zeros(n, dtype=torch.long, device=device)  # each row's node at level l
    indptr, edge_codes, edge_parent = [], [], []
    for level in range(sorted_codes.shape[1]):
        col = sorted_codes[:, level]
        new_prefix[1:] |= col[1:] != col[:-1]
        starts = new_prefix.nonzero().squeeze(1)  # first sorted row of each edge
        num_nodes = int(parent[-1]) + 1
        counts = torch.bincount(parent[starts], minlength=num_nodes)
        indptr.append(torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
        edge_codes.append(col[starts])
        edge_parent.append(parent[starts])
        parent = new_prefix.long().cumsum(0) - 1  # rows -> their node at level l+1
    return indptr, edge_codes, edge_parent


def code_dtype(codebook_sizes: Sequence[int]) -> torch.dtype:
    """The smallest integer dtype that holds every code (uint8 for K <= 256: 1 byte a code)."""
    k = max(codebook_sizes)
    if k <= 256:
        return torch.uint8
    return torch.int16 if k <= 2**15 else torch.int32


def index_dtype(max_value: int) -> torch.dtype:
    """int32 for node / item / edge ids below 2**31 (4 bytes, not 8), else int64."""
    return torch.int32 if max_value < 2**31 else torch.int64


def dense_mask(edge_parent: Tensor, edge_codes: Tensor, num_nodes: int, k: int) -> Tensor:
    """[num_nodes + 1 x k] bool: mask[n, c] iff node n has an edge with code c.

    The extra last row is all False: indexing with node -1 (a dead beam) wraps
    to it, so the mask of [b*beam] nodes is a single gather, no fix-up pass.
    """
    mask = torch.zeros(num_nodes + 1, k, dtype=torch.bool, device=edge_codes.device)
    mask[edge_parent, edge_codes] = True
    return mask


def csr_mask(indptr: Tensor, edge_codes: Tensor, nodes: Tensor, k: int, max_degree: int) -> Tensor:
    """[M x k] bool allowed-code mask of nodes: [M] straight from the CSR form (-1: all False).

    Gathers a fixed [M x max_degree] window of edge codes per node and scatters
    the valid ones: no host sync (the window size is known at build time), and
    the work is O(M x max_degree) <= O(M x k), the size of the mask it returns.
    At the deep levels of a large trie max_degree is a handful.
    """
    m = nodes.shape[0]
    alive = nodes >= 0
    safe = nodes.clamp(min=0)
    starts = indptr[safe].long()
    counts = torch.where(alive, indptr[safe + 1].long() - starts, torch.zeros_like(starts))
    slot = torch.arange(max(max_degree, 1), device=nodes.device)
    valid = slot < counts[:, None]  # [M x d]
    edges = (starts[:, None] + slot).clamp(max=max(edge_codes.shape[0] - 1, 0))
    codes = torch.where(valid, edge_codes[edges].long(), k)  # invalid slots land in column k
    mask = torch.zeros(m, k + 1, dtype=torch.bool, device=nodes.device)
    mask.scatter_(1, codes, True)
    return mask[:, :k]


def find_edges(
    indptr: Tensor, edge_codes: Tensor, nodes: Tensor, codes: Tensor, k: int, max_degree: int
) -> Tensor:
    """[M] the edge id (= child node id) of (nodes[i], codes[i]); -1 where there is none.

    A branchless binary search inside each node's segment of edge_codes
    (ascending codes), all M queries at once: ceil(log2(max_degree)) halvings
    of 5 tiny ops each, so a deep level whose nodes have a few children costs
    2-3 gathers, and no per-edge key table (8 bytes an edge) is stored.
    """
    n_nodes = indptr.shape[0] - 1
    alive = (nodes >= 0) & (nodes < n_nodes) & (codes >= 0) & (codes < k)
    safe = nodes.clamp(0, max(n_nodes - 1, 0))
    base = indptr[safe].long()
    width = indptr[safe + 1].long() - base  # >= 1: every inner node has a child
    for _ in range(max(max_degree - 1, 0).bit_length()):
        half = width // 2
        # Last edge with code <= the query (codes are distinct within a node).
        base = torch.where(edge_codes[base + half] <= codes, base + half, base)
        width = width - half
    found = alive & (edge_codes[base] == codes)
    return torch.where(found, base, torch.full_like(base, -1))


def find_keys(keys: Tensor, nodes: Tensor, codes: Tensor, k: int) -> Tensor:
    """find_edges through a sorted key table keys[e] = parent * k + code: one searchsorted."""
    query = nodes * k + codes
    idx = torch.searchsorted(keys, query).clamp(max=keys.shape[0] - 1)
    # A code outside [0, K) would alias a neighbouring node's edge: (n, K) == (n+1, 0).
    found = (keys[idx] == query) & (nodes >= 0) & (codes >= 0) & (codes < k)
    return torch.where(found, idx, torch.full_like(idx, -1))
