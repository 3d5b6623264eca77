"""bench/sid_neighbours.py: pairs never cross two users, and the prefix shares
count what they say."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.data import train_sequences


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("sid_neighbours")


def test_pairs_are_each_users_consecutive_items(bench, beauty_root):
    a, b = bench.consecutive_pairs(beauty_root)
    seq = train_sequences(beauty_root)
    lengths = np.diff(seq.offsets)
    assert len(a) == int(np.maximum(lengths - 1, 0).sum())
    first = seq.items[seq.offsets[0] : seq.offsets[1]]
    n = len(first) - 1
    assert a[:n].tolist() == first[:-1].tolist() and b[:n].tolist() == first[1:].tolist()


def test_prefix_share_counts_equal_prefixes(bench):
    codes = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 2], [1, 1, 2]])
    a, b = np.array([0, 0, 0, 1]), np.array([1, 2, 3, 0])
    assert bench.prefix_share(codes, a, b) == [0.75, 0.5, 0.0]


def test_a_missing_table_is_named(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        bench.read_codes(tmp_path / "sids" / "nope.parquet")
