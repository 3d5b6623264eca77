"""From item palettes to semantic IDs (§4.2.4): PCA then K-Means, per position.

Each palette position l is quantized on its own: the L2-normalized vectors
p_il of all items are reduced by PCA to 64 dimensions, then clustered into
K = 256 centroids; item i's code at position l is its nearest centroid. The
codes are parallel (no residual, no coarse → fine order). Items whose L codes
still coincide get an index token (`sidrec.data.sids.disambiguate`) when the
SID table is written; the others get none.

Not in the paper: `spread_collisions` moves all but one item of each colliding
group to the cheapest free SID one code away (the next-nearest centroid at the
one position where that costs least). LC-Rec's "uniform semantic mapping"
does the same for the last level with Sinkhorn-Knopp; with parallel codes any
position may move. On Beauty it turns 19% colliding items and up to 32 items
per SID into none (docs/RESULTS_lamia.md).

    q = fit_quantizer(palettes, pca_dim=64, codebook_size=256)   # palettes: [N x L x d]
    codes = q.codes(palettes)                                     # [N x L]
    codes, moved = spread_collisions(q.reduce(palettes), q.centroids, codes)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sidrec.progress import Progress
from sidrec.tokenizers.kmeans import kmeans, nearest

__all__ = [
    "PaletteQuantizer",
    "fit_quantizer",
    "normalize_palettes",
    "position_ami",
    "spread_collisions",
]


def normalize_palettes(palettes: np.ndarray) -> np.ndarray:
    """[N x L x d] → unit-norm vectors (the space the contrastive hinges shape)."""
    p = np.asarray(palettes, dtype=np.float32)
    return p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-8)


@dataclass
class PaletteQuantizer:
    """means: [L x d]; components: [L x k x d] (PCA rows); centroids: [L x K x k]."""

    means: np.ndarray
    components: np.ndarray
    centroids: np.ndarray

    def reduce(self, palettes: np.ndarray) -> np.ndarray:
        """[N x L x d] → [N x L x k] PCA coordinates of the normalized vectors."""
        p = normalize_palettes(palettes)
        return np.einsum("nld,lkd->nlk", p - self.means[None], self.components)

    def codes(self, palettes: np.ndarray) -> np.ndarray:
        """[N x L x d] → [N x L] int64."""
        z = self.reduce(palettes)
        cols = [nearest(z[:, pos], self.centroids[pos]) for pos in range(z.shape[1])]
        return np.stack(cols, 1).astype(np.int64)

    def state(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "components": self.components, "centroids": self.centroids}


def _pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """x: [N x d] → mean [d], components [dim x d] (top right singular vectors)."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:dim]


def fit_quantizer(
    palettes: np.ndarray,
    pca_dim: int = 64,
    codebook_size: int = 256,
    iters: int = 25,
    seed: int = 0,
    backend: str = "auto",
) -> PaletteQuantizer:
    """PCA to pca_dim, then K-Means with codebook_size clusters, for each position
    independently (faiss when installed, scikit-learn otherwise)."""
    p = normalize_palettes(palettes)
    n, levels, d = p.shape
    if pca_dim > d:
        raise ValueError(f"pca_dim={pca_dim} exceeds the palette width {d}; lower pca_dim")
    if codebook_size > n:
        raise ValueError(
            f"codebook_size={codebook_size} exceeds the {n} items; lower codebook_size"
        )
    means, comps, cents = [], [], []
    with Progress("lamia: PCA + K-Means", total=levels, unit="positions") as progress:
        for level in range(levels):
            mean, comp = _pca(p[:, level].astype(np.float64), pca_dim)
            z = ((p[:, level] - mean) @ comp.T).astype(np.float32)
            cents.append(kmeans(z, codebook_size, iters=iters, seed=seed + level, backend=backend))
            means.append(mean.astype(np.float32))
            comps.append(comp.astype(np.float32))
            progress.update()
    return PaletteQuantizer(np.stack(means), np.stack(comps), np.stack(cents))


def spread_collisions(
    z: np.ndarray, centroids: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, int]:
    """Give every item its own code tuple where one changed code can do it.

    z: [N x L x k] reduced palettes; centroids: [L x K x k]; codes: [N x L]
    nearest-centroid codes. In each group of items sharing a tuple, the item
    nearest its centroids keeps it; each other item takes the free tuple whose
    one changed position costs the least extra squared distance, measured in
    units of that position's mean quantization error (so positions compare).
    An item with no free tuple one code away keeps its codes (the SID table's
    index token then separates it). Returns (new codes, items moved).
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    levels = codes.shape[1]
    own = ((z - centroids[np.arange(levels)[None, :], codes]) ** 2).sum(-1)  # [N x L]
    scale = own.mean(0) + 1e-12
    taken = set(map(tuple, codes.tolist()))
    moved = 0
    for item in _movers(codes, (own / scale).sum(1)):
        dist = ((z[item][:, None, :] - centroids) ** 2).sum(-1)  # [L x K]
        extra = (dist - own[item][:, None]) / scale[:, None]
        extra[np.arange(levels), codes[item]] = np.inf
        for flat in np.argsort(extra, axis=None, kind="stable"):
            level, code = divmod(int(flat), extra.shape[1])
            candidate = codes[item].copy()
            candidate[level] = code
            key = tuple(candidate.tolist())
            if np.isfinite(extra[level, code]) and key not in taken:
                taken.add(key)
                codes[item] = candidate
                moved += 1
                break
    return codes, moved


def _movers(codes: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Items that share their tuple with a cheaper one (ties: the lower id stays)."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    order = np.lexsort((np.arange(len(cost)), cost, inverse.reshape(-1)))
    group = inverse.reshape(-1)[order]
    repeat = np.r_[False, group[1:] == group[:-1]]
    return order[repeat]


def position_ami(codes: np.ndarray) -> float:
    """Mean adjusted mutual information between the codes of two palette
    positions (over all pairs): 0 = independent aspects (chance-corrected:
    the raw NMI of two random 256-way codings of 12k items is ~0.32), 1 = the
    same partition of the catalog repeated, which wastes the SID's length."""
    from sklearn.metrics import adjusted_mutual_info_score

    levels = codes.shape[1]
    pairs = [(i, j) for i in range(levels) for j in range(i + 1, levels)]
    if not pairs:
        return 0.0
    return float(np.mean([adjusted_mutual_info_score(codes[:, i], codes[:, j]) for i, j in pairs]))
