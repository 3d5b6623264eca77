"""spread_collisions: colliding LAMIA items move to the cheapest free SID one code away."""

from __future__ import annotations

import itertools

import numpy as np

from sidrec.tokenizers.kmeans import nearest
from sidrec.tokenizers.lamia.quantize import spread_collisions


def _clustered(n: int, levels: int, k: int, dim: int, seed: int):
    """Points drawn around few centroids, so that many items share a code tuple."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(levels, k, dim)).astype(np.float32)
    hot = rng.integers(0, 3, size=(n, levels))  # only 3 of k codes are used: collisions
    z = centroids[np.arange(levels)[None, :], hot] + 0.3 * rng.normal(size=(n, levels, dim))
    codes = np.stack([nearest(z[:, lv], centroids[lv]) for lv in range(levels)], 1)
    return z.astype(np.float32), centroids, codes


def _cost(z, centroids, item, level, code) -> float:
    return float(np.linalg.norm(z[item, level] - centroids[level, code]) ** 2)


def test_every_item_gets_its_own_tuple_and_moves_at_most_one_code():
    z, centroids, codes = _clustered(80, 3, 8, 4, seed=0)
    assert len({tuple(r) for r in codes.tolist()}) < 80  # the fixture collides
    spread, moved = spread_collisions(z, centroids, codes)
    assert len({tuple(r) for r in spread.tolist()}) == 80
    changed = (spread != codes).sum(1)
    assert set(changed.tolist()) <= {0, 1}
    assert moved == int((changed == 1).sum())


def test_the_keeper_is_the_cheapest_and_each_move_is_the_cheapest_free_one():
    z, centroids, codes = _clustered(60, 3, 6, 3, seed=1)
    levels, k = centroids.shape[:2]
    spread, _ = spread_collisions(z, centroids, codes)
    own = np.array(
        [[_cost(z, centroids, i, lv, codes[i, lv]) for lv in range(levels)] for i in range(60)]
    )
    scale = own.mean(0)
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(codes.tolist()):
        groups.setdefault(tuple(row), []).append(i)
    original = set(groups)
    moved_to = {tuple(r) for r in spread[(spread != codes).any(1)].tolist()}
    for members in groups.values():
        keeper = min(members, key=lambda i: ((own[i] / scale).sum(), i))
        assert (spread[keeper] == codes[keeper]).all()
        for i in members:
            if i == keeper:
                continue
            # Brute force over every one-code change, by the cost formula written out.
            options = []
            for lv, c in itertools.product(range(levels), range(k)):
                if c == codes[i, lv]:
                    continue
                cand = codes[i].copy()
                cand[lv] = c
                extra = (_cost(z, centroids, i, lv, c) - own[i, lv]) / scale[lv]
                options.append((extra, tuple(cand.tolist())))
            chosen = tuple(spread[i].tolist())
            chosen_cost = next(e for e, t in options if t == chosen)
            # Nothing cheaper was free: each cheaper tuple is an original one or
            # another mover's (claimed before this item's turn).
            cheaper = [t for e, t in options if e < chosen_cost - 1e-6]
            assert all(t in original or t in moved_to - {chosen} for t in cheaper)


def test_an_item_with_no_free_tuple_keeps_its_codes():
    # One level, two codes, three identical items: only two tuples exist.
    centroids = np.array([[[0.0], [1.0]]], dtype=np.float32)
    z = np.zeros((3, 1, 1), dtype=np.float32)
    codes = np.zeros((3, 1), dtype=np.int64)
    spread, moved = spread_collisions(z, centroids, codes)
    assert moved == 1
    assert sorted(spread[:, 0].tolist()) == [0, 0, 1]


def test_no_collision_changes_nothing():
    z, centroids, _ = _clustered(50, 2, 64, 3, seed=2)
    codes = np.stack([np.arange(50) % 64, np.arange(50) // 64], 1)
    spread, moved = spread_collisions(z, centroids, codes)
    assert moved == 0
    assert (spread == codes).all()
