"""sidrec.decoding.trie: CSR tables by hand, fast paths vs the dict-trie reference, errors."""

from __future__ import annotations

import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.decoding import SidTrie, random_sid_table
from sidrec.decoding import _reference as ref

# Items 0..4; sorted order: [0,1,0] [0,1,2] [0,2,1] [1,0,0] [1,0,1]
TABLE = torch.tensor([[1, 0, 1], [0, 1, 2], [0, 2, 1], [1, 0, 0], [0, 1, 0]])


@st.composite
def tables(draw, max_items: int = 60):
    """(codes [N x L], sizes): distinct random SIDs with a different K per level."""
    levels = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 7), min_size=levels, max_size=levels))
    n = draw(st.integers(1, min(max_items, math.prod(sizes))))
    return random_sid_table(n, sizes, seed=draw(st.integers(0, 2**16))), sizes


def test_csr_tables_by_hand():
    trie = SidTrie.build(TABLE, [2, 3, 3])
    # level 0: root -> codes 0, 1; level 1: [0] -> 1, 2 and [1] -> 0
    assert trie.indptr[0].tolist() == [0, 2]
    assert trie.edge_codes[0].tolist() == [0, 1]
    assert trie.indptr[1].tolist() == [0, 2, 3]
    assert trie.edge_codes[1].tolist() == [1, 2, 0]
    # level 2 nodes: [0,1] [0,2] [1,0] -> leaves [0,1,0] [0,1,2] [0,2,1] [1,0,0] [1,0,1]
    assert trie.indptr[2].tolist() == [0, 2, 3, 5]
    assert trie.edge_codes[2].tolist() == [0, 2, 1, 0, 1]
    assert trie.leaf_items.tolist() == [4, 1, 2, 3, 0]
    assert trie.masks[1].tolist() == [[False, True, True], [True, False, False], [False] * 3]
    assert [trie.num_nodes(lv) for lv in range(4)] == [1, 2, 3, 5]
    assert trie.node_prefixes(2).tolist() == [[0, 1], [0, 2], [1, 0]]
    assert trie.lookup(torch.tensor([[0, 2, 1], [0, 2, 0], [1, 1, 0]])).tolist() == [2, -1, -1]
    # out-of-range codes must not alias a neighbour: (node [0,1], code 3) is not ([0,2], 0)
    assert (
        trie.lookup(torch.tensor([[0, 1, 3], [0, 1, -1], [0, 3, 0], [-1, 2, 1]])).tolist()
        == [-1] * 4
    )


@settings(max_examples=60, deadline=None)
@given(tables())
def test_masks_children_and_lookup_match_reference(table):
    codes, sizes = table
    trie = SidTrie.build(codes, sizes)
    csr_only = SidTrie.build(codes, sizes, dense_mask=False)
    for level, k in enumerate(sizes):
        nodes = torch.cat([torch.arange(trie.num_nodes(level)), torch.tensor([-1])])
        dense = trie.allowed_mask(level, nodes)
        want = ref.allowed_mask(codes, trie.node_prefixes(level), k)
        torch.testing.assert_close(dense[:-1], want)
        assert not dense[-1].any()  # a dead beam allows nothing
        torch.testing.assert_close(trie.allowed_mask(level, nodes, dense=False), dense)
        torch.testing.assert_close(csr_only.allowed_mask(level, nodes), dense)
        # child() agrees with the mask on every (node, code) pair
        grid_nodes = nodes.repeat_interleave(k)
        grid_codes = torch.arange(k).repeat(nodes.shape[0])
        child = trie.child(level, grid_nodes, grid_codes)
        assert torch.equal(child >= 0, dense.reshape(-1))
    assert torch.equal(trie.lookup(codes), torch.arange(codes.shape[0]))
    assert torch.equal(trie.sids[trie.leaf_items.long()].long(), codes[trie.leaf_items.long()])


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(0, 64))
def test_binary_search_children_match_the_key_table(table, budget):
    """Levels past the budget (no mask, no key table) answer exactly like small ones."""
    codes, sizes = table
    full = SidTrie.build(codes, sizes)  # tiny: masks and key tables at every level
    lean = SidTrie.build(codes, sizes, mask_budget=budget)  # some levels, or none
    for level, k in enumerate(sizes):
        nodes = torch.cat([torch.arange(full.num_nodes(level)), torch.tensor([-1])])
        grid_nodes = nodes.repeat_interleave(k + 2)
        grid_codes = torch.arange(-1, k + 1).repeat(nodes.shape[0])  # out of range too
        want = full.child(level, grid_nodes, grid_codes)
        assert torch.equal(lean.child(level, grid_nodes, grid_codes), want)
        torch.testing.assert_close(lean.allowed_mask(level, nodes), full.allowed_mask(level, nodes))
    assert torch.equal(lean.lookup(codes), torch.arange(codes.shape[0]))


def test_memory_is_bounded_at_scale():
    """Masks and key tables never grow past the budget; the rest is compact (issue 18)."""
    sizes = [256] * 4
    # 300k distinct SIDs, fast: an odd multiplier is a bijection mod 2**32.
    flat = (torch.arange(300_000) * 2_654_435_761) % 2**32
    codes = torch.stack([(flat >> (8 * (3 - lv))) % 256 for lv in range(4)], 1)
    trie = SidTrie.build(codes, sizes, mask_budget=1 << 20)
    nbytes = trie.nbytes()
    assert nbytes["dense_masks"] <= 4 * (1 << 20)
    # SID table 4 B + leaf ids 4 B + edge codes ~L B + indptr ~4 B per node per item
    assert (nbytes["csr"] + nbytes["dense_masks"]) / codes.shape[0] <= 32
    assert [m is not None for m in trie.masks] == [True, True, False, False]
    assert trie.sids.dtype == torch.uint8 and trie.indptr[3].dtype == torch.int32
    probe = torch.randperm(codes.shape[0])[:500]
    assert torch.equal(trie.lookup(codes[probe]), probe)


def test_wide_codebooks_and_old_int64_states():
    codes = torch.tensor([[0, 1000], [3, 999], [3, 70000]])
    trie = SidTrie.build(codes, [4, 70001])
    assert trie.sids.dtype == torch.int32
    assert trie.lookup(codes).tolist() == [0, 1, 2]
    old = {name: t.long() for name, t in trie.state_dict().items()}  # bundles before issue 18
    loaded = SidTrie.from_state_dict(old)
    assert loaded.sids.dtype == torch.int32 and loaded.lookup(codes).tolist() == [0, 1, 2]


@settings(max_examples=40, deadline=None)
@given(tables(), st.integers(0, 2**16))
def test_lookup_rejects_every_sid_outside_the_table(table, seed):
    codes, sizes = table
    trie = SidTrie.build(codes, sizes)
    gen = torch.Generator().manual_seed(seed)
    probe = torch.stack([torch.randint(k, (50,), generator=gen) for k in sizes], 1)
    known = {tuple(r) for r in codes.tolist()}
    want = [codes.tolist().index(r) if tuple(r) in known else -1 for r in probe.tolist()]
    assert trie.lookup(probe).tolist() == want


def test_to_and_state_dict_round_trip():
    trie = SidTrie.build(TABLE, [2, 3, 3])
    moved = trie.to("cpu")
    assert moved.device == torch.device("cpu")
    loaded = SidTrie.from_state_dict(trie.state_dict())
    for a, b in zip(
        [*trie.indptr, *trie.edge_codes, *trie.masks, trie.sids, trie.leaf_items],
        [
            *loaded.indptr,
            *loaded.edge_codes,
            *loaded.masks,
            loaded.sids,
            loaded.leaf_items,
        ],
        strict=True,
    ):
        assert torch.equal(a, b)
    assert loaded.codebook_sizes == trie.codebook_sizes
    assert trie.nbytes()["dense_masks"] == (1 + 1) * 2 + (2 + 1) * 3 + (3 + 1) * 3  # + sentinels


def _best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_build_scales_linearly_not_quadratically():
    # A ratio of two sizes on the same machine, so a busy shared box does not
    # fail it: 4x the items must cost well under the 16x a pairwise build would.
    # (Absolute build times are a bench figure: bench/decode_throughput.py.)
    small = random_sid_table(12_101, [256] * 4, seed=0)
    large = random_sid_table(4 * 12_101, [256] * 4, seed=0)
    SidTrie.build(small, 256)  # warm-up: first-call allocations
    ratio = _best_of(3, lambda: SidTrie.build(large, 256)) / _best_of(
        3, lambda: SidTrie.build(small, 256)
    )
    assert ratio < 10, f"4x the items took {ratio:.1f}x the time"


@pytest.mark.parametrize(
    ("codes", "sizes", "match"),
    [
        (torch.tensor([[0, 1], [0, 1]]), 2, "disambiguation"),
        (torch.tensor([[0, 2]]), 2, "level 1 holds codes 2..2"),
        (torch.tensor([[0, 1]]), [2, 2, 2], "one per level"),
        (torch.tensor([[0.0, 1.0]]), 2, "integer"),
        (torch.zeros(0, 3, dtype=torch.long), 2, "non-empty"),
    ],
)
def test_build_errors(codes, sizes, match):
    with pytest.raises(ValueError, match=match):
        SidTrie.build(codes, sizes)


def test_dense_request_without_masks_fails():
    trie = SidTrie.build(TABLE, 3, dense_mask=False)
    with pytest.raises(ValueError, match="dense_mask=False"):
        trie.allowed_mask(0, torch.tensor([0]), dense=True)
    over = SidTrie.build(TABLE, 3, mask_budget=8)  # (1 + 1) x 3 fits, (2 + 1) x 3 does not
    assert over.masks[0] is not None and over.masks[1] is None
    with pytest.raises(ValueError, match="level 1 has no dense mask"):
        over.allowed_mask(1, torch.tensor([0]), dense=True)
