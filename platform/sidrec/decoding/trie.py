"""SidTrie: the set of valid semantic IDs as per-level transition tables on the device.

TIGER (Rajput et al., NeurIPS 2023, §3.2) and HiD-VAE (App. C.2) decode an
item's SID code by code and must only ever emit SIDs that exist. The
public generative-rec repos do this with per-step scans over the whole SID
table, per-position (not per-prefix) allowed sets that still produce
nonexistent IDs, or Python dict tries walked beam by beam. Here the trie is
flattened once into tensors so that one beam step for the whole
batch x beam is a handful of gathers:

- canonical form, CSR per level l (node ids dense per level, node 0 of
  level 0 is the root): `indptr[l]: [n_l + 1]`, `edge_codes[l]: [n_{l+1}]`,
  and `edge_keys[l] = parent * K_l + code`, globally sorted, so that
  (node, code) -> child is one `searchsorted`. The edge id is the child's
  node id at level l+1; a leaf (level L) node id maps to an item id.
- derived dense masks `masks[l]: [n_l + 1 x K_l]` bool (the last row, all
  False, is where dead beams' node -1 lands), so that the allowed-code mask
  of [b*beam] nodes is one gather. Memory: sum_l (n_l + 1) * K_l bytes, at
  most ~(1 + N * (L-1)) * K. Measured on random tables with K=256: 12k x 3
  -> 2.8 MiB, 1M x 4 -> 253 MiB (worst case ~770 MB). Past a few million
  items build with `dense_mask=False`: the mask is then scattered from the
  CSR tables at every step (one host sync per step, memory O(N L)).

    trie = SidTrie.build(codes, codebook_sizes=256).to("cuda")   # codes: [N x L]
    mask = trie.allowed_mask(level, nodes)                       # [M x K_l]
    child = trie.child(level, nodes, chosen_codes)               # [M], -1 if invalid
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from sidrec.decoding._csr import check_table, csr_mask, dense_mask, level_tables, lexsort_rows


@dataclass(frozen=True)
class SidTrie:
    """Valid SIDs as per-level CSR transition tables (+ optional dense masks).

    Build with `SidTrie.build`; all tensors live on one device (`.to(device)`).
    sids: [N x L] item -> SID (the table it was built from; row i is item i).
    leaf_items: [N] leaf node id (sorted SID order) -> item id.
    indptr[l]: [n_l + 1]; edge_codes[l], edge_keys[l]: [n_{l+1}] (see module doc).
    masks[l]: [n_l + 1 x K_l] bool (last row: all False, for node -1), or None when
        built with dense_mask=False.
    """

    codebook_sizes: tuple[int, ...]
    sids: Tensor
    leaf_items: Tensor
    indptr: tuple[Tensor, ...]
    edge_codes: tuple[Tensor, ...]
    edge_keys: tuple[Tensor, ...]
    masks: tuple[Tensor, ...] | None

    @classmethod
    def build(
        cls, codes: Tensor, codebook_sizes: int | Sequence[int], dense_mask: bool = True
    ) -> SidTrie:
        """Trie of codes: [N x L] integer SIDs with distinct rows (row i = item i).

        codebook_sizes: K, or K_l per level; must equal the decoder's output
        size at each level. Append the disambiguation code as an extra level
        first if rows collide (duplicates raise: an item must be reachable).
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
        # With distinct rows, sorted row i is leaf node i, so the sort order maps leaf -> item.
        return _assemble(sizes, codes, order, indptr, edge_codes, edge_parent, dense_mask)

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
        """Device memory of the CSR tables and of the dense masks, in bytes."""
        csr = [self.sids, self.leaf_items, *self.indptr, *self.edge_codes, *self.edge_keys]
        return {
            "csr": sum(t.numel() * t.element_size() for t in csr),
            "dense_masks": sum(m.numel() for m in self.masks) if self.masks else 0,
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
            edge_keys=move(self.edge_keys),
            masks=None if self.masks is None else move(self.masks),
        )

    # ---- lookups used by the beam search ----------------------------------------
    def allowed_mask(self, level: int, nodes: Tensor, dense: bool | None = None) -> Tensor:
        """[M x K_level] bool: the codes allowed after each of nodes: [M] (-1: none).

        Dispatches to the dense gather when the masks were built (dense=None),
        else scatters from the CSR tables; both give the same mask.
        """
        use_dense = self.masks is not None if dense is None else dense
        if use_dense:
            if self.masks is None:
                raise ValueError("dense=True: this trie was built with dense_mask=False")
            return self.masks[level][nodes]  # -1 wraps to the all-False sentinel row
        return csr_mask(
            self.indptr[level], self.edge_codes[level], nodes, self.codebook_sizes[level]
        )

    def child(self, level: int, nodes: Tensor, codes: Tensor) -> Tensor:
        """[M] child node ids at level+1 of (nodes[i], codes[i]); -1 where no such edge."""
        keys, k = self.edge_keys[level], self.codebook_sizes[level]
        query = nodes * k + codes
        # edge_keys is globally sorted (nodes ascending, codes ascending within a node).
        idx = torch.searchsorted(keys, query).clamp(max=keys.shape[0] - 1)
        # A code outside [0, K) would alias a neighbouring node's edge: (n, K) == (n+1, 0).
        found = (keys[idx] == query) & (nodes >= 0) & (codes >= 0) & (codes < k)
        return torch.where(found, idx, torch.full_like(idx, -1))

    def items(self, leaves: Tensor) -> Tensor:
        """Item ids of leaf nodes (any shape); -1 stays -1."""
        return torch.where(leaves >= 0, self.leaf_items[leaves.clamp(min=0)], -1)

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
            prefixes = torch.cat([parents, self.edge_codes[lv][:, None]], 1)
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
    def from_state_dict(cls, state: dict[str, Tensor], dense_mask: bool = True) -> SidTrie:
        sizes = tuple(int(k) for k in state["codebook_sizes"])
        indptr = [state[f"indptr.{lv}"] for lv in range(len(sizes))]
        codes = [state[f"edge_codes.{lv}"] for lv in range(len(sizes))]
        parents = [_edge_parents(ptr) for ptr in indptr]
        return _assemble(
            sizes, state["sids"], state["leaf_items"], indptr, codes, parents, dense_mask
        )


def _assemble(
    sizes: tuple[int, ...],
    sids: Tensor,
    leaf_items: Tensor,
    indptr: list[Tensor],
    edge_codes: list[Tensor],
    edge_parent: list[Tensor],
    with_masks: bool,
) -> SidTrie:
    """Derive the search keys (and the dense masks) from the CSR tables."""
    levels = list(zip(indptr, edge_codes, edge_parent, sizes, strict=True))
    keys = tuple(parent * k + code for _, code, parent, k in levels)
    masks = None
    if with_masks:
        masks = tuple(dense_mask(p, c, ptr.shape[0] - 1, k) for ptr, c, p, k in levels)
    return SidTrie(sizes, sids, leaf_items, tuple(indptr), tuple(edge_codes), keys, masks)


def _edge_parents(indptr: Tensor) -> Tensor:
    """[n_{l+1}] the parent node of each edge, from the CSR row pointer."""
    nodes = torch.arange(indptr.shape[0] - 1, device=indptr.device)
    return torch.repeat_interleave(nodes, indptr[1:] - indptr[:-1])
