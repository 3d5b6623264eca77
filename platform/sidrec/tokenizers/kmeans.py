"""k-means for codebook initialization and RQ-KMeans: faiss when installed,
scikit-learn otherwise, one signature for both.

faiss is the fast path on large catalogs (and on GPUs); scikit-learn's Lloyd
with k-means++ seeding is the one every machine has. Both are seeded, so a
run is reproducible on one backend; the two backends need not give the same
centroids (different seeding), only equally good ones.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

__all__ = ["kmeans", "kmeans_plus_plus", "available_backends", "nearest"]

log = logging.getLogger(__name__)


def available_backends() -> list[str]:
    names = ["sklearn"]
    if importlib.util.find_spec("faiss") is not None:
        names.insert(0, "faiss")
    return names


def kmeans(
    x: np.ndarray, k: int, *, iters: int = 25, seed: int = 0, backend: str = "auto"
) -> np.ndarray:
    """Centroids [k x d] (float32) of the rows of x [n x d]; needs n >= k.

    backend: "auto" (faiss when importable, else sklearn), "faiss" or "sklearn".
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"kmeans: x must be [n x d], got shape {x.shape}")
    if k < 1 or x.shape[0] < k:
        raise ValueError(
            f"codebook_size: k-means needs at least k={k} points, got {x.shape[0]}; "
            "lower codebook_size or use more items"
        )
    if backend == "auto":
        backend = available_backends()[0]
    if backend == "faiss":
        return _kmeans_faiss(x, k, iters, seed)
    if backend == "sklearn":
        return _kmeans_sklearn(x, k, iters, seed)
    raise ValueError(f"kmeans backend must be auto, faiss or sklearn, got {backend!r}")


def nearest(x: np.ndarray, centroids: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """[n] index of the nearest centroid (squared Euclidean) for each row of x.

    Rows go `chunk` at a time, so the [rows x k] score matrix stays ~256 MiB at
    k = 256 whatever n is (all at once: 9.5 GiB at 10M items; docs/SCALE.md).
    """
    # ||x - c||² = ||x||² - 2 x·c + ||c||²; ||x||² is the same for every c.
    norms = (centroids**2).sum(1)[None, :]
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        scores = x[start : start + chunk] @ centroids.T * -2.0 + norms
        out[start : start + chunk] = scores.argmin(1)
    return out


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means++ seeds [k x d] (Arthur & Vassilvitskii 2007): each new seed is
    drawn with probability proportional to its squared distance to the
    nearest seed so far. O(n·k·d), one pass per seed."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    seeds = np.empty((k, x.shape[1]), dtype=np.float32)
    seeds[0] = x[rng.integers(n)]
    closest = ((x - seeds[0]) ** 2).sum(1)
    for i in range(1, k):
        total = float(closest.sum())
        # All points coincide with a seed (duplicates): any point will do.
        pick = rng.integers(n) if total <= 0 else rng.choice(n, p=closest / total)
        seeds[i] = x[pick]
        closest = np.minimum(closest, ((x - seeds[i]) ** 2).sum(1))
    return seeds


def _kmeans_faiss(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    import faiss

    model = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, verbose=False)
    model.train(x)
    return np.asarray(model.centroids, dtype=np.float32)


def _kmeans_sklearn(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Fewer distinct points than k (duplicated items) is legal here: the
        # spare centroids are duplicates and dead-code re-seeding moves them.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Our own k-means++ seeds: scikit-learn's greedy k-means++ took ~100 s
        # on 12k x 384 points and k=256 on 2 cores, against ~3 s for Lloyd.
        init = kmeans_plus_plus(x, k, seed)
        model = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, random_state=seed)
        model.fit(x)
    return model.cluster_centers_.astype(np.float32)
