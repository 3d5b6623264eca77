"""SidTrie: the set of valid semantic IDs as per-level transition tables on the device.

TIGER (Rajput et al., NeurIPS 2023, §3.2) and HiD-VAE (App. C.2) decode an
item's SID code by code and must only ever emit SIDs that exist. The
public generative-rec repos do this with per-step scans over the whole SID
table, per-position (not per-prefix) allowed sets that still produce
nonexistent IDs, or Python dict tries walked beam by beam. Here the trie is
flattened once into tensors so that one beam step for the whole
batch x beam is a handful of gathers:

- canonical form, CSR per level l (node ids dense per level, node 0 of
  level 0 is the root): `indptr[l]: [n_l + 1]` and `edge_codes[l]:
  [n_{l+1}]`, codes ascending within a node. The edge id is the child's node
  id at level l+1; a leaf (level L) node id maps to an item id. (node, code)
  -> child is a vectorized binary search inside the node's segment
  (`max_degree[l].bit_length()` halvings: 2-3 at the deep levels of a big
  trie); the allowed-code mask gathers a fixed [M x max_degree[l]] window.
  Neither needs a host sync.
- derived dense masks `masks[l]: [n_l + 1 x K_l]` bool (the last row, all
  False, is where dead beams' node -1 lands), only at the levels where
  (n_l + 1) x K_l <= mask_budget bytes: the shallow levels, where a mask row
  gather is cheaper than the window scatter. A deep level has ~N nodes, so a
  mask there would grow with prefixes x K (1M x 4 with K=256: 253 MiB, 10M:
  ~2.5 GiB); it is never built past the budget, so the dense part is bounded
  by L x mask_budget whatever N is.
- compact dtypes: codes uint8 (K <= 256) or int16, ids int32 below 2**31.
  Trie + SID table: ~L + 4 (leaf ids) + ~L (edge codes) + 4 x (nodes / item)
  bytes per item, e.g. ~13 B/item at 10M x 4, K=256 (docs/SCALE.md).

    trie = SidTrie.build(codes, codebook_sizes=256).to("cuda")   # codes: [N x L]
    mask = trie.allowed_mask(level, nodes)                       # [M x K_l]
    child = trie.child(level, nodes, chosen_codes)               # [M], -1 if invalid
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from sidrec.decoding._csr import (
    check_table,
    code_dtype,
    csr_mask,
    dense_mask,
    find_edges,
    find_keys,
    index_dtype,
    level_tables,
    lexsort_rows,
)

# Dense masks only where (n_l + 1) x K_l fits: 4 MiB holds every level of a
# K=256 trie up to 16k prefixes; past it the window scatter costs about the
# same per step (measured: docs/SCALE.md), so more mask buys nothing.
MASK_BUDGET_BYTES = 4 << 20


@dataclass(frozen=True)
class SidTrie:
    """Valid SIDs as per-level CSR transition tables (+ bounded dense masks).

    Build with `SidTrie.build`; all tensors live on one device (`.to(device)`).
    sids: [N x L] item -> SID, in `code_dtype` (row i is item i).
    leaf_items: [N] leaf node id (sorted SID order) -> item id (int32).
    indptr[l]: [n_l + 1] int32; edge_codes[l]: [n_{l+1}] code dtype (see module doc).
    max_degree[l]: the most children of any node at level l (host int).
    masks[l]: [n_l + 1 x K_l] bool (last row: all False, for node -1), or None at a
        level over the mask budget; masks is None when built with dense_mask=False.
    edge_keys[l]: [n_{l+1}] int64 parent * K_l + code (sorted) where 8 x n_{l+1}
        bytes fit the budget: child() is then one searchsorted, else a binary search.
    """

    codebook_sizes: tuple[int, ...]
    sids: Tensor
    leaf_items: Tensor
    indptr: tuple[Tensor, ...]
    edge_codes: tuple[Tensor, ...]
    max_degree: tuple[int, ...]
    masks: tuple[Tensor | None, ...] | None
    edge_keys: tuple[Tensor | None, ...] = ()

    @classmethod
    def build(
        cls,
        codes: Tensor,
        codebook_sizes: int | Sequence[int],
        dense_mask: bool = True,
        mask_budget: int = MASK_BUDGET_BYTES,
    ) -> SidTrie:
        """Trie of codes: [N x L] integer SIDs with distinct rows (row i = item i).

        codebook_sizes: K, or K_l per level; must equal the decoder's output
        size at each level. Append the disambiguation code as an extra level
        first if rows collide (duplicates raise: an item must be reachable).
        dense_mask: build a dense mask at each level whose (n_l + 1) x K_l
        bytes fit mask_budget, and a key table where 8 x n_{l+1} bytes do
        (False: neither; every level scatters from CSR and binary-searches).
        mask_budget: bytes per level per derived table (masks, keys); bounds
        their total by 2 x L x mask_budget whatever N is.
        """
        codes, sizes = check_table(codes, codebook_sizes)
        order = lexsort_rows(codes, sizes)
        indptr, edge_codes, edge_parent = level_tables(codes[order])
        if edge_codes[-1].shape[0] != codes.shape[0]:
            dup = codes.shape[0] - edge_codes[-1].shape[0]
            raise ValueError(
                f"codes: {dup} rows repeat another row's SID; append a disambiguation "
                "code level so that every item has its own SID"
            )
        budget = mask_budget if dense_mask else None
        # With distinct rows, sorted row i is leaf node i, so the sort order maps leaf -> item.
        return _assemble(sizes, codes, order, indptr, edge_codes, edge_parent, budget)

    # ---- structure -------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def num_items(self) -> int:
        return self.sids.shape[0]

    @property
    def device(self) -> torch.device:
        return self.sids.device

    def num_nodes(self, level: int) -> int:
        """Distinct length-`level` prefixes (1 at level 0, N at level L)."""
        return self.num_items if level == self.num_levels else self.indptr[level].shape[0] - 1

    def nbytes(self) -> dict[str, int]:
        """Device memory in bytes: the CSR tables (SID table and leaf ids included)
        and the dense masks."""
        csr = [self.sids, self.leaf_items, *self.indptr, *self.edge_codes]
        csr += [k for k in self.edge_keys if k is not None]
        masks = [m for m in self.masks or () if m is not None]
        return {
            "csr": sum(t.numel() * t.element_size() for t in csr),
            "dense_masks": sum(m.numel() for m in masks),
        }

    def to(self, device: torch.device | str) -> SidTrie:
        """A copy with every table on device (the trie itself is immutable)."""
        move = lambda ts: tuple(t.to(device) for t in ts)  # noqa: E731
        return replace(
            self,
            sids=self.sids.to(device),
            leaf_items=self.leaf_items.to(device),
            indptr=move(self.indptr),
            edge_codes=move(self.edge_codes),
            masks=None if self.masks is None else _move(self.masks, device),
            edge_keys=_move(self.edge_keys, device),
        )

    # ---- lookups used by the beam search ----------------------------------------
    def allowed_mask(self, level: int, nodes: Tensor, dense: bool | None = None) -> Tensor:
        """[M x K_level] bool: the codes allowed after each of nodes: [M] (-1: none).

        Dispatches to the dense gather where this level has a mask (dense=None),
        else scatters from the CSR tables; both give the same mask.
        """
        mask = None if self.masks is None else self.masks[level]
        if dense and mask is None:
            raise ValueError(
                f"dense=True: level {level} has no dense mask (built with dense_mask=False "
                "or over mask_budget)"
            )
        if mask is not None and dense is not False:
            return mask[nodes]  # -1 wraps to the all-False sentinel row
        k = self.codebook_sizes[level]
        return csr_mask(
            self.indptr[level], self.edge_codes[level], nodes, k, self.max_degree[level]
        )

    def child(self, level: int, nodes: Tensor, codes: Tensor) -> Tensor:
        """[M] child node ids (long) at level+1 of (nodes[i], codes[i]); -1 where no such edge."""
        k, codes = self.codebook_sizes[level], codes.long()
        keys = self.edge_keys[level] if self.edge_keys else None
        if keys is not None:
            return find_keys(keys, nodes, codes, k)
        degree = self.max_degree[level]
        return find_edges(self.indptr[level], self.edge_codes[level], nodes, codes, k, degree)

    def items(self, leaves: Tensor) -> Tensor:
        """Item ids of leaf nodes (any shape); -1 stays -1."""
        return torch.where(leaves >= 0, self.leaf_items[leaves.clamp(min=0)].long(), -1)

    def lookup(self, sids: Tensor) -> Tensor:
        """Item id of each SID in sids: [... x L], -1 where the SID is not in the catalog."""
        flat = sids.reshape(-1, self.num_levels).long()
        nodes = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        for level in range(self.num_levels):
            nodes = self.child(level, nodes, flat[:, level])
        return self.items(nodes).reshape(sids.shape[:-1])

    def node_prefixes(self, level: int) -> Tensor:
        """[n_level x level] the code prefix that each node at `level` stands for."""
        prefixes = torch.zeros(1, 0, dtype=torch.long, device=self.device)
        for lv in range(level):
            counts = self.indptr[lv][1:] - self.indptr[lv][:-1]
            parents = torch.repeat_interleave(prefixes, counts, dim=0)
            prefixes = torch.cat([parents, self.edge_codes[lv][:, None].long()], 1)
        return prefixes

    # ---- serialization (for the served artifact) --------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Flat tensors for torch.save(..., weights_only-safe); masks are rebuilt on load."""
        out = {"codebook_sizes": torch.tensor(self.codebook_sizes), "sids": self.sids}
        out["leaf_items"] = self.leaf_items
        for level in range(self.num_levels):
            out[f"indptr.{level}"] = self.indptr[level]
            out[f"edge_codes.{level}"] = self.edge_codes[level]
        return out

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Tensor], dense_mask: bool = True, mask_budget: int = MASK_BUDGET_BYTES
    ) -> SidTrie:
        """The trie of `state_dict()` (older int64 states are compacted on load)."""
        sizes = tuple(int(k) for k in state["codebook_sizes"])
        indptr = [state[f"indptr.{lv}"] for lv in range(len(sizes))]
        codes = [state[f"edge_codes.{lv}"] for lv in range(len(sizes))]
        budget = mask_budget if dense_mask else None
        return _assemble(sizes, state["sids"], state["leaf_items"], indptr, codes, None, budget)


def trie_with_item_nodes(codes: Tensor, codebook_sizes) -> tuple[SidTrie, Tensor]:
    """The trie of `codes` [N x L] and [N x L-1] the node each item's SID prefix
    reaches before each level (column 0: the root): what generative models need to
    score a known item's SID level by level."""
    codes = codes.cpu()
    trie = SidTrie.build(codes, codebook_sizes)
    return trie, item_nodes(trie, codes)


def item_nodes(trie: SidTrie, codes: Tensor) -> Tensor:
    """[N x L] int64: the node of `trie` each row of codes [N x L] reaches before
    each level (column 0: the root), on the trie's device."""
    codes = codes.to(trie.device).long()
    nodes = [torch.zeros(codes.shape[0], dtype=torch.long, device=trie.device)]
    for level in range(codes.shape[1] - 1):
        nodes.append(trie.child(level, nodes[-1], codes[:, level]))
    return torch.stack(nodes, 1)


def _assemble(
    sizes: tuple[int, ...],
    sids: Tensor,
    leaf_items: Tensor,
    indptr: list[Tensor],
    edge_codes: list[Tensor],
    edge_parent: list[Tensor] | None,
    mask_budget: int | None,
) -> SidTrie:
    """Compact the CSR tables and derive the per-level degrees and the dense masks.

    mask_budget: None builds no mask and no key table; else a mask at each level
    whose (n_l + 1) x K_l bytes fit it, and a key table where 8 x n_{l+1} bytes do.
    """
    n = sids.shape[0]
    codes_t, ids_t = code_dtype(sizes), index_dtype(n + 1)
    degree = tuple(int((p[1:] - p[:-1]).max()) for p in indptr)
    masks = keys = None
    if mask_budget is not None:
        masks, keys = [], []
        for level, (ptr, code, k) in enumerate(zip(indptr, edge_codes, sizes, strict=True)):
            small_mask = (ptr.shape[0]) * k <= mask_budget  # (n_l + 1) x K_l bytes
            small_keys = 8 * code.shape[0] <= mask_budget
            parent = None
            if small_mask or small_keys:  # only small levels: n_{l+1} <= budget
                parent = edge_parent[level] if edge_parent else _edge_parents(ptr)
                parent = parent.long()
            masks.append(
                dense_mask(parent, code.long(), ptr.shape[0] - 1, k) if small_mask else None
            )
            keys.append(parent * k + code.long() if small_keys else None)
    return SidTrie(
        sizes,
        sids.to(codes_t),
        leaf_items.to(ids_t),
        tuple(p.to(ids_t) for p in indptr),
        tuple(c.to(codes_t) for c in edge_codes),
        degree,
        None if masks is None else tuple(masks),
        tuple(keys) if keys else (None,) * len(sizes),
    )


def _move(tensors: tuple[Tensor | None, ...], device: torch.device | str):
    return tuple(None if t is None else t.to(device) for t in tensors)


def _edge_parents(indptr: Tensor) -> Tensor:
    """[n_{l+1}] the parent node of each edge, from the CSR row pointer."""
    nodes = torch.arange(indptr.shape[0] - 1, device=indptr.device)
    return torch.repeat_interleave(nodes, (indptr[1:] - indptr[:-1]).long())
