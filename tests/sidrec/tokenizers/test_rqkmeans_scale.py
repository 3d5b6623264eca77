"""RQ-KMeans at scale (docs/SCALE.md, issue 18): each level is fitted on a bounded,
seeded sample and every item assigned in row chunks; a catalog below the sample size
(Beauty's 12k items) gets the very centroids and codes of the all-rows fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.distributed import RunSpec, fit, load_state
from sidrec.tokenizers import rqkmeans_default, rqkmeans_loop
from sidrec.tokenizers.kmeans import kmeans
from sidrec.tokenizers.rqkmeans import fit_rows, rqkmeans_assign, rqkmeans_codes
from sidrec.tokenizers.train import STATE_FILE


def clustered(n, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, d))
    return (centers[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def write_embeddings(path, x):
    flat = pa.array(x.reshape(-1), pa.float32())
    table = pa.table(
        {
            "item_id": pa.array(np.arange(len(x), dtype=np.int32)),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, x.shape[1]),
        }
    )
    pq.write_table(table, path)
    return str(path)


def all_rows_fit(x, cfg, rows_per_level=None):
    """The reference: before issue 18, each level fitted on the residuals of the rows given."""
    centroids = []
    for level in range(cfg.levels):
        rows = None if rows_per_level is None else rows_per_level[level]
        _, residual = rqkmeans_codes(x if rows is None else x[rows], centroids)
        centroids.append(
            kmeans(residual, cfg.codebook_size, iters=cfg.kmeans_iters, seed=cfg.seed + level,
                   backend=cfg.kmeans_backend)
        )  # fmt: skip
    codes, residual = rqkmeans_codes(x, centroids)
    return centroids, codes, float((residual.astype(np.float64) ** 2).sum(1).mean())


def run_loop(tmp_path, x, cfg):
    config = {"tokenizer": cfg, "embeddings": write_embeddings(tmp_path / "e.parquet", x)}
    outcome = fit(rqkmeans_loop, config, RunSpec("km", str(tmp_path / "runs")))
    return outcome, load_state(outcome.checkpoint, STATE_FILE)


def test_a_beauty_size_catalog_gets_the_all_rows_fit_bit_for_bit(tmp_path):
    x = clustered(12_101)  # Beauty's item count, below fit_sample
    cfg = dataclasses.replace(
        rqkmeans_default(), codebook_size=32, kmeans_iters=5, kmeans_backend="sklearn"
    )
    assert fit_rows(len(x), cfg, 0) is None
    outcome, state = run_loop(tmp_path, x, cfg)
    centroids, codes, loss = all_rows_fit(x, cfg)
    for got, want in zip(state["centroids"], centroids, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(state["codes"], codes)
    assert state["metrics"]["recon_loss"] == loss


def test_a_larger_catalog_fits_each_level_on_its_seeded_sample_and_assigns_every_item(
    tmp_path,
):
    x = clustered(3_000, seed=1)
    cfg = dataclasses.replace(
        rqkmeans_default(),
        codebook_size=8,
        kmeans_iters=5,
        kmeans_backend="sklearn",
        fit_sample=500,
    )
    rows = [fit_rows(len(x), cfg, level) for level in range(cfg.levels)]
    for r in rows:  # sorted, distinct, bounded
        assert len(r) == 500 and np.all(np.diff(r) > 0) and r[-1] < len(x)
    assert not np.array_equal(rows[0], rows[1])  # a fresh sample per level
    np.testing.assert_array_equal(rows[0], fit_rows(len(x), cfg, 0))  # seeded
    _, state = run_loop(tmp_path, x, cfg)
    centroids, codes, loss = all_rows_fit(x, cfg, rows)
    for got, want in zip(state["centroids"], centroids, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(state["codes"], codes)  # all 3,000 items
    assert state["metrics"]["recon_loss"] == pytest.approx(loss, rel=1e-12)


def test_chunked_assignment_equals_all_at_once():
    x = clustered(1_000, seed=2)
    centroids = [kmeans(x, 8, iters=3, backend="sklearn")]
    centroids.append(kmeans(x - centroids[0][rqkmeans_codes(x, centroids)[0][:, 0]], 8, iters=3))
    want, residual = rqkmeans_codes(x, centroids)
    for chunk in (1, 333, 1 << 18):
        codes, squared = rqkmeans_assign(x, centroids, chunk=chunk)
        np.testing.assert_array_equal(codes, want)
        np.testing.assert_array_equal(squared, (residual.astype(np.float64) ** 2).sum(1))


def test_fit_sample_below_the_codebook_is_refused():
    with pytest.raises(ValueError, match="fit_sample=4 must be >= codebook_size=8"):
        dataclasses.replace(rqkmeans_default(), codebook_size=8, fit_sample=4).validate(100)
