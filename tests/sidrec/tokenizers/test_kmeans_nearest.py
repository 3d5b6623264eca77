"""kmeans.nearest goes through the rows in chunks: the same answer as all at once."""

from __future__ import annotations

import numpy as np

from sidrec.tokenizers.kmeans import nearest


def test_chunked_nearest_equals_the_brute_force_answer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1_000, 8)).astype(np.float32)
    centroids = rng.normal(size=(16, 8)).astype(np.float32)
    want = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    for chunk in (1, 7, 1_000, 1 << 18):
        np.testing.assert_array_equal(nearest(x, centroids, chunk=chunk), want)
    assert nearest(x[:0], centroids).shape == (0,)
