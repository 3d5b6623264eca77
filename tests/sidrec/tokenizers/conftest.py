"""A small real Beauty slice for the tokenizer tests: the first items of the
ingested catalog with cheap text embeddings (TF-IDF + SVD of the item text,
~1 s), written in the embedding stage's artifact format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

SLICE_ITEMS = 1500


def write_text_embeddings(texts: list[str], path: Path, dim: int = 48) -> np.ndarray:
    """Unit-norm TF-IDF/SVD vectors of `texts` as `item_id, embedding` parquet."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(texts)
    vectors = TruncatedSVD(dim, random_state=0).fit_transform(tfidf).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(np.arange(len(texts), dtype=np.int32)),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            }
        ),
        path,
    )
    return vectors


@pytest.fixture(scope="session")
def beauty_slice(tmp_path_factory, beauty_root) -> Path:
    """An artifact root holding catalog/items.parquet (first SLICE_ITEMS Beauty
    items) and embeddings/tfidf.parquet for them."""
    root = tmp_path_factory.mktemp("beauty-slice")
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, SLICE_ITEMS)
    (root / "catalog").mkdir()
    pq.write_table(items, root / "catalog" / "items.parquet")
    write_text_embeddings(items.column("text").to_pylist(), root / "embeddings" / "tfidf.parquet")
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors on a busy 2-core box: one intra-op thread is the fast setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, which
    sidrec.tracking then takes for a user's server: drop it between tests so
    each test's store is its own."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
