"""RQ-KMeans: training-free residual k-means on the item embeddings themselves.

Level 0 clusters the embeddings into K centroids, level l clusters what the
levels before it left over; the SID is the chain of nearest centroids. No
encoder, no gradient: the cheap baseline that GRID and OpenOneRec use, and
the reference point for what a learned tokenizer adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidrec.tokenizers.kmeans import kmeans, nearest

__all__ = ["RQKMeansConfig", "rqkmeans_default", "fit_level", "rqkmeans_codes"]


@dataclass(frozen=True)
class RQKMeansConfig:
    levels: int = 3  # as RQ-VAE / HiD-VAE, so the tables compare
    codebook_size: int = 256
    kmeans_iters: int = 25  # Lloyd iterations per level
    kmeans_backend: str = "auto"  # faiss when installed, else sklearn
    seed: int = 0

    learner = "rqkmeans"

    def validate(self, num_items: int) -> None:
        if self.levels < 1:
            raise ValueError(f"levels={self.levels} must be >= 1")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size} must be >= 2")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters={self.kmeans_iters} must be >= 1")
        if self.codebook_size > num_items:
            raise ValueError(
                f"codebook_size={self.codebook_size} is larger than the catalog "
                f"({num_items} items); lower codebook_size"
            )


def rqkmeans_default() -> RQKMeansConfig:
    """3 levels × 256 centroids, 25 Lloyd iterations: the same code space as TIGER."""
    return RQKMeansConfig(
        levels=3, codebook_size=256, kmeans_iters=25, kmeans_backend="auto", seed=0
    )


def fit_level(residual: np.ndarray, cfg: RQKMeansConfig, level: int) -> np.ndarray:
    """Centroids [K x d] of one level's residuals [N x d]."""
    return kmeans(
        residual,
        cfg.codebook_size,
        iters=cfg.kmeans_iters,
        seed=cfg.seed + level,
        backend=cfg.kmeans_backend,
    )


def rqkmeans_codes(x: np.ndarray, centroids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """codes [N x len(centroids)] and the residual left after the last level."""
    residual = np.asarray(x, dtype=np.float32)
    codes = []
    for book in centroids:
        code = nearest(residual, book)
        codes.append(code)
        residual = residual - book[code]
    out = np.stack(codes, 1) if codes else np.zeros((len(residual), 0), dtype=np.int64)
    return out.astype(np.int64), residual
