"""Non-learned baselines that validate the evaluation harness.

MostPopular scores every item by its training count; ItemKNN is the classic
item-based neighbourhood model (Sarwar et al., WWW 2001) with cosine
similarity over users' training sequences, keeping each item's top neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from sidrec.data.ingest import Sequences

__all__ = ["BaselineConfig", "MostPopular", "ItemKNN", "ItemKNNConfig"]


class MostPopular:
    def __init__(self, train_counts: np.ndarray):
        self.scores_ = torch.as_tensor(train_counts, dtype=torch.float32)

    @property
    def num_items(self) -> int:
        return len(self.scores_)

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        """-> [b x N]: the same popularity row for every user."""
        return self.scores_.expand(len(histories), -1)


@dataclass(frozen=True)
class ItemKNNConfig:
    # Neighbours kept per item: 100 is a common default; more rarely helps on
    # sparse Amazon data and costs memory.
    neighbours: int = 100
    # Shrinkage of the cosine towards 0 for pairs seen together few times.
    shrink: float = 0.0


@dataclass(frozen=True)
class BaselineConfig:
    """One baseline evaluation (jobs/evaluate.py: `--set FIELD=VALUE`)."""

    # mostpop is the floor every model must beat; itemknn a cheap non-neural
    # neighbour model.
    model: Literal["mostpop", "itemknn"] = "mostpop"
    split: Literal["valid", "test"] = "test"  # the split ranked (test: the reported figure)
    neighbours: int = ItemKNNConfig.neighbours  # item-KNN: neighbours kept per item
    # item-KNN: cosine shrinkage towards 0 for pairs seen together rarely
    shrink: float = ItemKNNConfig.shrink
    batch_size: int = 1024  # users scored at once: batch_size x catalog floats in memory

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.batch_size < 1:
            raise ValueError(
                f"neighbours and batch_size must be >= 1, got {self.neighbours}, {self.batch_size}"
            )
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")

    def item_knn(self) -> ItemKNNConfig:
        return ItemKNNConfig(neighbours=self.neighbours, shrink=self.shrink)


class ItemKNN:
    def __init__(self, sequences: Sequences, num_items: int, cfg: ItemKNNConfig = ItemKNNConfig()):
        self.num_items = num_items
        self.similarity = self._fit(sequences, num_items, cfg)

    @staticmethod
    def _fit(seqs: Sequences, num_items: int, cfg: ItemKNNConfig) -> sp.csr_matrix:
        users = np.repeat(np.arange(seqs.num_users), np.diff(seqs.offsets))
        # Binary user x item matrix: a repeated item counts once per user.
        x = sp.csr_matrix(
            (np.ones(len(users), np.float32), (users, seqs.items)),
            shape=(seqs.num_users, num_items),
        )
        x.sum_duplicates()
        x.data[:] = 1.0
        co = (x.T @ x).tocsr()
        norms = np.sqrt(co.diagonal()).astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(num_items), np.diff(co.indptr))
        denom = norms[rows] * norms[co.indices] + cfg.shrink
        co.data = (co.data / np.maximum(denom, 1e-12)).astype(np.float32)
        return _top_k_per_row(co, cfg.neighbours)

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        """-> [b x N]: sum of the similarity rows of the items in each history."""
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        cols = np.concatenate(histories) if histories else np.zeros(0, np.int64)
        h = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), self.num_items)
        )
        return torch.from_numpy(np.asarray((h @ self.similarity).todense(), dtype=np.float32))


def _top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    indptr, indices, data = [0], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        vals, cols = m.data[lo:hi], m.indices[lo:hi]
        if len(vals) > k:
            top = np.argpartition(-vals, k - 1)[:k]
            vals, cols = vals[top], cols[top]
        indices.append(cols)
        data.append(vals)
        indptr.append(indptr[-1] + len(vals))
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)), shape=m.shape
    )
