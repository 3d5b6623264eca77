"""Candidate retrieval, HiD-VAE Eq. 3: the top-k tags of a level by cosine similarity.

    C_l(x) = TopK_{t in T_l(p)} cos(e_x, e_t)

e_x is the item text's embedding and e_t the tag's (its path text, TagPool.texts),
both from the same encoder; T_l(p) is level l's pool, or in a tree only the
children of the parent p chosen at level l-1.
"""

from __future__ import annotations

import numpy as np

from sidrec.tagging.pool import TagPool

__all__ = ["cosine_top_k", "retrieve_candidates"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_top_k(queries: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """queries [n x d], keys [T x d] -> [n x min(k, T)] key indices, most similar first
    (ties: lower index first, so the result does not depend on the sort's stability)."""
    sims = _unit(queries) @ _unit(keys).T  # [n x T]
    k = min(k, keys.shape[0])
    # lexsort's last key is primary: descending similarity, then ascending index.
    order = np.lexsort((np.broadcast_to(np.arange(keys.shape[0]), sims.shape), -sims), axis=-1)
    return order[:, :k]


def retrieve_candidates(
    item_vectors: np.ndarray,
    tag_vectors: np.ndarray,
    pool: TagPool,
    level: int,
    parents: np.ndarray | None,
    k: int,
) -> list[np.ndarray]:
    """Per item, the indices (into level `level` of `pool`) of its top-k candidates.

    item_vectors: [n x d]; tag_vectors: [T_l x d], row j = tag j of the level;
    parents: [n] the chosen level-(l-1) tag per item (-1 = none: the item's path
    stopped), or None at level 0 / in a flat pool. An item whose parent is -1
    or has no children gets an empty array.
    """
    n = item_vectors.shape[0]
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
    if parents is None or not pool.tree or level == 0:
        ranked = cosine_top_k(item_vectors, tag_vectors, k)
        return [row.astype(np.int64) for row in ranked]
    # One matrix product per distinct parent: siblings share their allowed set.
    for parent in np.unique(parents[parents >= 0]):
        rows = np.flatnonzero(parents == parent)
        allowed = pool.candidates(level, int(parent))
        if len(allowed) == 0:
            continue
        ranked = cosine_top_k(item_vectors[rows], tag_vectors[allowed], k)
        for row, picks in zip(rows.tolist(), ranked, strict=True):
            out[row] = allowed[picks].astype(np.int64)
    return out
