"""bench/beam_width.py: a saved generative bundle's valid metrics at several beam widths,
on the real Beauty valid split; bundles that cannot be widened are refused by name."""

from __future__ import annotations

import argparse

import pytest

USERS = 300


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("beam_width")


def test_one_row_per_width_with_the_valid_metrics(bench, bundles, beauty_root):
    rows = bench.valid_at_widths(bundles["sidgpt"], beauty_root, [10, 40], max_users=USERS)
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {*bench.COLUMNS, "seconds"}
        assert all(0.0 <= row[c] <= 1.0 for c in bench.COLUMNS)
        assert row["recall@5"] <= row["recall@10"] and row["ndcg@5"] <= row["ndcg@10"]


def test_a_bundle_without_a_trie_is_refused_naming_it(bench, bundles, beauty_root):
    with pytest.raises(ValueError, match="sasrec bundle ranks every item"):
        bench.valid_at_widths(bundles["sasrec"], beauty_root, [20], max_users=USERS)


def test_widths_below_ten_are_refused(bench):
    with pytest.raises(argparse.ArgumentTypeError, match="--widths 5,20"):
        bench._widths("5,20")
    with pytest.raises(argparse.ArgumentTypeError, match="--widths 20,x: comma-separated"):
        bench._widths("20,x")
    assert bench._widths("20,50") == [20, 50]
