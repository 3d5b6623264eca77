"""The synthetic catalog (issue 18): canonical layout, seeded, streamed, power law, signal."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidrec.data import load_items, load_split, train_sequences
from sidrec.data.ingest import Sequences, build_splits, held_outputs
from sidrec.data.synthetic import USER_BLOCK, SyntheticConfig, generate, split_rows

N = 20_000  # ~0.5 s a catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    manifest = generate(SyntheticConfig(num_items=N, artifact_root=str(root)))
    return root, manifest


def _tables(root):
    files = ["catalog/items.parquet", "catalog/interactions.parquet"]
    files += [f"splits/{s}.parquet" for s in ("train", "valid", "test")]
    return [pq.read_table(root / f) for f in files]


def test_writes_the_ingest_layout_that_later_stages_read(catalog):
    root, manifest = catalog
    assert held_outputs(root) is not None  # manifests + sha256 as jobs/ingest.py writes them
    items = load_items(root)
    assert items.num_rows == N and items.column("item_id").to_pylist()[:3] == [0, 1, 2]
    first = items.slice(0, 1).to_pylist()[0]
    assert first["title"] and first["text"].startswith("Title: ") and len(first["categories"]) == 3
    test = load_split(root, "test")
    counts = manifest["counts"]
    assert len(test) == counts["users"] == N and counts["interactions"] > 8 * N
    seqs = train_sequences(root)
    assert seqs.num_users == N
    # each user's test target is the item after its valid target, history capped at 20
    valid = load_split(root, "valid")
    assert all(len(test.history(i)) <= 20 for i in range(100))
    assert np.array_equal(test.history(7)[-1:], valid.targets[7:8])
    stamps = pq.read_table(root / "catalog/interactions.parquet").column("timestamp").to_numpy()
    users = pq.read_table(root / "catalog/interactions.parquet").column("user_id").to_numpy()
    same = users[1:] == users[:-1]
    assert (np.diff(stamps)[same] > 0).all() and (np.diff(users) >= 0).all()


def test_seeded_and_independent_of_the_chunk_size(catalog, tmp_path):
    root, manifest = catalog
    again = generate(
        SyntheticConfig(num_items=N, artifact_root=str(tmp_path / "a"), chunk_users=USER_BLOCK)
    )
    assert again["fingerprint"] == manifest["fingerprint"]
    for mine, theirs in zip(_tables(root), _tables(tmp_path / "a"), strict=True):
        assert mine.equals(theirs)
    # streamed: one row group per chunk of users
    assert pq.ParquetFile(tmp_path / "a/catalog/interactions.parquet").num_row_groups == -(
        -N // USER_BLOCK
    )
    other = generate(SyntheticConfig(num_items=N, artifact_root=str(tmp_path / "b"), seed=1))
    assert not _tables(root)[1].equals(_tables(tmp_path / "b")[1])
    # an identical run is a no-op
    before = (tmp_path / "a/catalog/items.parquet").stat().st_mtime_ns
    generate(SyntheticConfig(num_items=N, artifact_root=str(tmp_path / "a")))
    assert (tmp_path / "a/catalog/items.parquet").stat().st_mtime_ns == before
    assert other["fingerprint"] != manifest["fingerprint"]


def test_memory_follows_the_chunk_not_the_catalog(tmp_path):
    """numpy's peak (tracemalloc sees it) with one-block chunks is a fraction of the
    peak when the whole user table is one chunk: nothing holds all interactions."""
    peaks = []
    for chunk in (USER_BLOCK, 4 * USER_BLOCK):
        cfg = SyntheticConfig(
            num_items=4 * USER_BLOCK,
            artifact_root=str(tmp_path / str(chunk)),
            chunk_users=chunk,
            branching=(4, 4, 4),  # fewer topics: less fixed work under tracemalloc
        )
        tracemalloc.start()
        generate(cfg)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[0] < 0.5 * peaks[1], f"peaks {peaks}"


def test_split_rows_equal_ingest_build_splits():
    rng = np.random.default_rng(0)
    lengths = np.array([1, 2, 3, 4, 5, 25, 40, 3])
    items = rng.integers(0, 50, size=lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    want = build_splits(Sequences(items, offsets), max_history=4)
    got = split_rows(items, offsets, max_history=4)
    for split in ("train", "valid", "test"):
        assert got[split].equals(want[split]), split


def test_popularity_is_a_power_law(catalog):
    root, _ = catalog
    items = pq.read_table(root / "catalog/interactions.parquet").column("item_id").to_numpy()
    counts = np.sort(np.bincount(items, minlength=N))[::-1]
    ranks = np.arange(10, 1000)
    slope = np.polyfit(np.log(ranks), np.log(counts[ranks - 1]), 1)[0]
    assert -1.0 < slope < -0.5, slope  # Zipf 0.8, flattened a little by sampling
    assert 0.15 < counts[: N // 100].sum() / counts.sum() < 0.5  # top 1% of items


def test_latent_topics_carry_signal(catalog):
    """Recall@10 of 'the 10 most popular items of the last item's topic' beats
    MostPopular by far: the interactions follow the topics, as the generator says."""
    root, _ = catalog
    paths = load_items(root).column("categories").to_pylist()
    _, topic = np.unique([" > ".join(p) for p in paths], return_inverse=True)
    train = train_sequences(root).items
    counts = np.bincount(train, minlength=N)
    most_popular = set(np.argsort(-counts)[:10].tolist())
    by_topic = {}
    for t in np.unique(topic):
        members = np.flatnonzero(topic == t)
        by_topic[t] = set(members[np.argsort(-counts[members])[:10]].tolist())
    test = load_split(root, "test")
    rows = range(0, len(test), 5)
    topical = np.mean([test.targets[i] in by_topic[topic[test.history(i)[-1]]] for i in rows])
    popular = np.mean([test.targets[i] in most_popular for i in rows])
    assert topical > 3 * popular and topical > 0.1, (topical, popular)


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_items", 0), ("mean_length", 2.5), ("noise", 1.5), ("chunk_users", 1000)],
)
def test_config_errors_name_the_field(field, value, tmp_path):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{"num_items": 10, "artifact_root": str(tmp_path), field: value})
