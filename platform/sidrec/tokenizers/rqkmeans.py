"""RQ-KMeans: training-free residual k-means on the item embeddings themselves.

Level 0 clusters the embeddings into K centroids, level l clusters what the
levels before it left over; the SID is the chain of nearest centroids. No
encoder, no gradient: the cheap baseline that GRID and OpenOneRec use, and
the reference point for what a learned tokenizer adds.

Scale (docs/SCALE.md): each level's centroids are fitted on a seeded sample of
`fit_sample` rows (all rows when the catalog is smaller, so Beauty-size runs
are unchanged), then every item is assigned `chunk` rows at a time
(`rqkmeans_assign`): k-means++ seeding alone is K passes over its input, and
the residuals of all N items would be a second [N x d] copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidrec.tokenizers.kmeans import kmeans, nearest

__all__ = [
    "RQKMeansConfig",
    "rqkmeans_default",
    "fit_level",
    "fit_rows",
    "rqkmeans_assign",
    "rqkmeans_codes",
]


@dataclass(frozen=True)
class RQKMeansConfig:
    levels: int = 3  # as RQ-VAE / HiD-VAE, so the tables compare
    codebook_size: int = 256
    kmeans_iters: int = 25  # Lloyd iterations per level
    kmeans_backend: str = "auto"  # faiss when installed, else sklearn
    seed: int = 0
    # Rows each level's k-means is fitted on: a seeded sample when N is larger (1,024
    # per centroid at K = 256, 4x faiss's default cap); every item is still assigned.
    fit_sample: int = 262144

    learner = "rqkmeans"

    def validate(self, num_items: int) -> None:
        if self.levels < 1:
            raise ValueError(f"levels={self.levels} must be >= 1")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size} must be >= 2")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters={self.kmeans_iters} must be >= 1")
        if self.fit_sample < self.codebook_size:
            raise ValueError(
                f"fit_sample={self.fit_sample} must be >= codebook_size={self.codebook_size}"
            )
        if self.codebook_size > num_items:
            raise ValueError(
                f"codebook_size={self.codebook_size} is larger than the catalog "
                f"({num_items} items); lower codebook_size"
            )


def rqkmeans_default() -> RQKMeansConfig:
    """3 levels × 256 centroids, 25 Lloyd iterations: the same code space as TIGER."""
    return RQKMeansConfig(
        levels=3,
        codebook_size=256,
        kmeans_iters=25,
        kmeans_backend="auto",
        seed=0,
        fit_sample=262144,
    )


def fit_rows(num_items: int, cfg: RQKMeansConfig, level: int) -> np.ndarray | None:
    """Sorted row ids [fit_sample] that `level` is fitted on; None: all rows (N <= fit_sample)."""
    if num_items <= cfg.fit_sample:
        return None
    rng = np.random.default_rng([cfg.seed, level])  # a fresh sample per level, seeded
    return np.sort(rng.choice(num_items, size=cfg.fit_sample, replace=False))


def fit_level(residual: np.ndarray, cfg: RQKMeansConfig, level: int) -> np.ndarray:
    """Centroids [K x d] of one level's residuals [n x d] (the fit sample's rows)."""
    return kmeans(
        residual,
        cfg.codebook_size,
        iters=cfg.kmeans_iters,
        seed=cfg.seed + level,
        backend=cfg.kmeans_backend,
    )


def rqkmeans_assign(
    x: np.ndarray, centroids: list[np.ndarray], chunk: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray]:
    """codes [N x len(centroids)] int64 and each item's squared residual [N] float64,
    `chunk` rows at a time: memory beyond x is [chunk x d], whatever N is. Row for
    row the same numbers as `rqkmeans_codes` on all of x (`nearest` cuts at `chunk` too)."""
    codes = np.empty((len(x), len(centroids)), dtype=np.int64)
    squared = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), chunk):
        part, residual = rqkmeans_codes(x[start : start + chunk], centroids)
        codes[start : start + len(part)] = part
        squared[start : start + len(part)] = (residual.astype(np.float64) ** 2).sum(1)
    return codes, squared


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
