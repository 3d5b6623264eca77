"""Eq. 3 retrieval: cosine top-k against a brute-force reference, and the tree restriction."""

from __future__ import annotations

import numpy as np

from sidrec.tagging import cosine_top_k, pool_from_paths, retrieve_candidates


def test_cosine_top_k_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, keys = rng.normal(size=(20, 8)), rng.normal(size=(13, 8)) * 5  # norms differ
    got = cosine_top_k(queries, keys, k=4)
    for q, row in zip(queries, got, strict=True):
        cos = [q @ k / np.linalg.norm(q) / np.linalg.norm(k) for k in keys]
        np.testing.assert_array_equal(row, np.argsort(cos)[::-1][:4])
    assert cosine_top_k(queries, keys, k=50).shape == (20, 13)  # k above the pool size


def test_children_are_retrieved_only_under_their_parent():
    pool = pool_from_paths(
        [["A", "x"], ["A", "y"], ["B", "z"], ["B", "w"], ["C"]], levels=2
    )  # level 1: A>x, A>y, B>z, B>w; C has no children
    rng = np.random.default_rng(1)
    items, tags = rng.normal(size=(6, 4)), rng.normal(size=(4, 4))
    # Item 0 points exactly at B>z but its parent is A: B>z must not come back.
    items[0] = tags[2]
    parents = np.array([0, 1, 0, 1, 2, -1])
    cands = retrieve_candidates(items, tags, pool, level=1, parents=parents, k=5)
    for parent, c in zip(parents, cands, strict=True):
        allowed = set(pool.candidates(1, int(parent)).tolist()) if parent >= 0 else set()
        assert set(c.tolist()) == allowed  # k >= children: all of them, never another's
    assert cands[0].tolist() in ([0, 1], [1, 0])
    top1 = retrieve_candidates(items, tags, pool, level=1, parents=parents, k=1)
    assert top1[2].tolist() == [cosine_top_k(items[2:3], tags[[0, 1]], 1)[0, 0]]
