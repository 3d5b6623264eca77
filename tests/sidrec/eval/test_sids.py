"""sidrec.eval.sids: SID table metrics vs the slow reference, hand cases, errors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.eval import _reference as ref
from sidrec.eval import (
    codebook_perplexity,
    codebook_utilization,
    collision_rate,
    max_items_per_sid,
    prefix_collision_rates,
    sid_table_metrics,
)

TABLE = torch.tensor([[0, 1], [0, 2], [1, 2], [0, 1]])


def test_collision_rate_counts_items_not_sids():
    codes = torch.tensor([[0, 1], [0, 1], [0, 1], [2, 3]])  # 3 items on one SID + 1 unique
    assert collision_rate(codes) == 0.75
    assert max_items_per_sid(codes) == 3
    assert collision_rate(np.array([[0, 1], [1, 0], [1, 1]])) == 0.0  # ndarray input
    assert max_items_per_sid(np.array([[0, 1], [1, 0]])) == 1


def test_per_level_metrics_by_hand():
    assert codebook_utilization(TABLE, 4) == [0.5, 0.5]
    assert codebook_utilization(TABLE, [2, 4]) == [1.0, 0.5]
    # level 0 uses code 0 three times and 1 once; level 1 uses 1 and 2 twice each
    h0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert codebook_perplexity(TABLE, 4) == pytest.approx([math.exp(h0), 2.0])
    assert codebook_perplexity(torch.arange(8)[:, None], 8) == pytest.approx([8.0])
    assert codebook_perplexity(torch.zeros(5, 1, dtype=torch.long), 8) == pytest.approx([1.0])
    # first code shared by items 0, 1, 3; the full SID (0, 1) by items 0 and 3
    assert prefix_collision_rates(TABLE) == [0.75, 0.5]


def test_sid_table_metrics_keys_and_values():
    m = sid_table_metrics(TABLE, 4)
    assert list(m) == [
        "num_items",
        "num_sids",
        "collision_rate",
        "max_items_per_sid",
        "prefix_collision/length_1",
        "prefix_collision/length_2",
        "utilization/level_0",
        "utilization/level_1",
        "perplexity/level_0",
        "perplexity/level_1",
    ]
    assert (m["num_items"], m["num_sids"], m["collision_rate"], m["max_items_per_sid"]) == (
        4,
        3,
        0.5,
        2,
    )
    assert m["prefix_collision/length_2"] == m["collision_rate"]


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_sid_metrics_match_reference(data):
    n, levels, k = (
        data.draw(st.integers(1, 25)),
        data.draw(st.integers(1, 4)),
        data.draw(st.integers(1, 4)),
    )
    rows = data.draw(
        st.lists(
            st.lists(st.integers(0, k - 1), min_size=levels, max_size=levels),
            min_size=n,
            max_size=n,
        )
    )
    codes = np.array(rows, dtype=np.int64)
    assert collision_rate(codes) == pytest.approx(ref.collision_rate(codes))
    assert max_items_per_sid(codes) == ref.max_items_per_sid(codes)
    assert codebook_utilization(codes, k) == pytest.approx(ref.codebook_utilization(codes, k))
    assert codebook_perplexity(codes, k) == pytest.approx(ref.codebook_perplexity(codes, k))
    expected_prefix = [ref.collision_rate(codes[:, :length]) for length in range(1, levels + 1)]
    assert prefix_collision_rates(codes) == pytest.approx(expected_prefix)


@pytest.mark.parametrize(
    "codes, size, match",
    [
        (torch.tensor([[0, 4]]), 4, "^codes: level 1"),
        (torch.tensor([[0, -1]]), 4, "^codes: level 1"),
        (torch.tensor([0, 1]), 4, "^codes:"),
        (torch.zeros(0, 2, dtype=torch.long), 4, "^codes:"),
        (torch.tensor([[0.0, 1.0]]), 4, "^codes:"),
        (torch.tensor([[0, 1]]), [4, 4, 4], "^codebook_size:"),
    ],
)
def test_bad_tables_raise(codes, size, match):
    with pytest.raises(ValueError, match=match):
        sid_table_metrics(codes, size)


def test_large_table_scales_linearly():
    # A hashed table, not pairwise: 4x the items must cost well under the 16x a
    # pairwise count would (a ratio on one machine, robust to a busy box).
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 64, (50_000, 3), generator=g)
    large = torch.randint(0, 64, (200_000, 3), generator=g)
    sid_table_metrics(small, 64)  # warm-up

    def best_of_3(codes):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            m = sid_table_metrics(codes, 64)
            times.append(time.perf_counter() - start)
        return min(times), m

    t_small, _ = best_of_3(small)
    t_large, m = best_of_3(large)
    assert t_large / t_small < 10, f"4x the items took {t_large / t_small:.1f}x the time"
    assert 0.0 < m["collision_rate"] < 1.0 and m["utilization/level_0"] == 1.0


def test_codes_too_wide_to_pack_fall_back_to_row_sort():
    big = 2**40  # two such levels overflow int64 when packed into one key
    codes = torch.tensor([[big, 1, 0], [big, 1, 0], [0, big, 7], [5, 1, 0]])
    assert collision_rate(codes) == ref.collision_rate(codes) == 0.5
    assert max_items_per_sid(codes) == 2
