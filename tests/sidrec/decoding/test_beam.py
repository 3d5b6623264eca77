"""sidrec.decoding.beam: the vectorized search vs exhaustive scoring and the dict-trie reference.

Properties (hypothesis): returned SIDs exist; beam >= N equals exhaustive
scoring; batched equals one by one; invalid SIDs are impossible for random
and adversarial logits; items are distinct per row; short lists pad with -1.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.decoding import SidTrie, ToyRNNDecoder, constrained_beam_search, random_sid_table
from sidrec.decoding import _reference as ref

# float32 sums of up to 4 log-probs vs Python-float sums; batched vs one-row matmuls
TOL = {"rtol": 1e-5, "atol": 1e-4}


@st.composite
def problems(draw, max_items: int = 40):
    """A SID table with a different K per level, a seeded toy decoder and its start state."""
    levels = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 6), min_size=levels, max_size=levels))
    n = draw(st.integers(1, min(max_items, math.prod(sizes))))
    codes = random_sid_table(n, sizes, seed=draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([0.3, 1.0, 4.0]))
    decoder = ToyRNNDecoder(sizes, seed=draw(st.integers(0, 2**16)), scale=scale)
    b = draw(st.integers(1, 3))
    users = torch.tensor(draw(st.lists(st.integers(0, 1000), min_size=b, max_size=b)))
    return codes, sizes, decoder, decoder.init_state(users)


def assert_same_ranking(items, scores, want_items, want_scores):
    """Same scores position by position; item lists may differ only among tied scores."""
    torch.testing.assert_close(scores, want_scores, **TOL)
    for got_i, got_s, exp_i, exp_s in zip(
        items.tolist(), scores.tolist(), want_items.tolist(), want_scores.tolist(), strict=True
    ):
        got = {i: s for i, s in zip(got_i, got_s, strict=True) if i >= 0}
        exp = {i: s for i, s in zip(exp_i, exp_s, strict=True) if i >= 0}
        for item in got.keys() & exp.keys():
            assert math.isclose(got[item], exp[item], rel_tol=1e-5, abs_tol=1e-4)
        cutoff = min(exp.values(), default=0.0)  # an item may only swap with a tie at the boundary
        for item in got.keys() ^ exp.keys():
            score = got.get(item, exp.get(item))
            assert math.isclose(score, cutoff, rel_tol=1e-5, abs_tol=1e-4), (item, score, cutoff)


def assert_valid(result, codes):
    """Every non-padding row is a real item whose SID is the returned one; no repeats."""
    known = {tuple(r): i for i, r in enumerate(codes.tolist())}
    for items, scores, sids in zip(*(t.tolist() for t in result), strict=True):
        real = [i for i in items if i >= 0]
        assert len(real) == len(set(real))
        for item, score, sid in zip(items, scores, sids, strict=True):
            if item < 0:
                assert score == float("-inf") and sid == [-1] * codes.shape[1]
            else:
                assert known[tuple(sid)] == item and math.isfinite(score)
        # padding only at the end, scores best first
        assert items == real + [-1] * (len(items) - len(real))
        assert scores == sorted(scores, reverse=True)


@settings(max_examples=80, deadline=None)
@given(problems(), st.integers(0, 40), st.booleans())
def test_wide_beam_equals_exhaustive_scoring(problem, extra, renormalize):
    codes, sizes, decoder, state = problem
    n = codes.shape[0]
    beam = n + extra % 3  # any beam >= N is exact
    topk = 1 + extra % beam
    b = state.hidden.shape[0]
    trie = SidTrie.build(codes, sizes)
    got = constrained_beam_search(
        decoder, b, trie, beam, topk, state=state, renormalize=renormalize
    )
    want_items, want_scores = ref.topk_from_scores(
        ref.exhaustive_scores(decoder, b, codes, state, renormalize=renormalize), topk
    )
    assert_valid(got, codes)
    assert_same_ranking(got.items, got.scores, want_items, want_scores)


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(1, 8), st.integers(1, 8))
def test_narrow_beam_equals_reference_beam_search(problem, beam, topk):
    codes, sizes, decoder, state = problem
    topk = min(topk, beam)
    b = state.hidden.shape[0]
    # odd beams: no mask and no key table anywhere (the binary-search path of big tries)
    trie = SidTrie.build(codes, sizes, mask_budget=0 if beam % 2 else 1 << 22)
    got = constrained_beam_search(decoder, b, trie, beam, topk, state=state)
    want = ref.reference_beam_search(decoder, b, codes, beam, topk, state=state)
    assert_valid(got, codes)
    assert_same_ranking(got.items, got.scores, want.items, want.scores)


@settings(max_examples=50, deadline=None)
@given(problems(), st.integers(1, 8), st.sampled_from([0, 16, 1 << 22]))
def test_batched_equals_one_by_one(problem, beam, budget):
    codes, sizes, decoder, state = problem
    # both mask paths, and tries with masks / key tables at none, some or all levels
    trie = SidTrie.build(codes, sizes, dense_mask=bool(beam % 2), mask_budget=budget)
    b = state.hidden.shape[0]
    batched = constrained_beam_search(decoder, b, trie, beam, beam, state=state)
    for row in range(b):
        single = constrained_beam_search(
            decoder, 1, trie, beam, beam, state=decoder.reorder(state, torch.tensor([row]))
        )
        assert_same_ranking(
            batched.items[row : row + 1], batched.scores[row : row + 1], *single[:2]
        )


class Adversary:
    """Wraps a decoder; puts (nearly) all probability mass on codes the trie disallows."""

    def __init__(self, decoder, codes, valid_logit: float):
        self.decoder, self.root, self.valid_logit = decoder, ref.dict_trie(codes), valid_logit

    def step(self, tokens, state):
        logits, state = self.decoder.step(tokens, state)
        adversarial = torch.full_like(logits, 30.0)  # invalid codes: huge
        for r, prefix in enumerate(tokens.tolist()):
            node = self.root
            for code in prefix:
                node = node.get(code, {}) if isinstance(node, dict) else {}
            adversarial[r, list(node)] = self.valid_logit
        return adversarial + 0.01 * logits, state

    def reorder(self, state, index):
        return self.decoder.reorder(state, index)


@settings(max_examples=50, deadline=None)
@given(problems(), st.integers(1, 8), st.sampled_from([-30.0, -1e4]))
def test_invalid_sids_impossible_under_adversarial_logits(problem, beam, valid_logit):
    codes, sizes, decoder, state = problem
    b = state.hidden.shape[0]
    trie = SidTrie.build(codes, sizes)
    adversary = Adversary(decoder, codes, valid_logit)
    got = constrained_beam_search(adversary, b, trie, beam, beam, state=state)
    assert_valid(got, codes)
    # the mask alone keeps the items: as many as the beam and the catalog allow
    assert (got.items >= 0).sum(1).tolist() == [min(beam, codes.shape[0])] * b


def test_mask_is_what_keeps_sids_valid():
    """Same loop without the mask: the adversary drives every beam to a nonexistent SID."""
    codes = random_sid_table(10, [4, 4, 4], seed=3)
    decoder = ToyRNNDecoder([4, 4, 4], seed=1)
    state = decoder.init_state(torch.arange(2))
    trie = SidTrie.build(codes, 4)
    adversary = Adversary(decoder, codes, -30.0)
    free = constrained_beam_search(adversary, 2, trie, 5, 5, state=state, constrained=False)
    assert (free.items == -1).all() and (free.sids >= 0).all() and torch.isfinite(free.scores).all()
    assert (trie.lookup(free.sids) == -1).all()
    held = constrained_beam_search(adversary, 2, trie, 5, 5, state=state)
    assert (held.items >= 0).all()


def test_unconstrained_keeps_valid_sids_and_matches_lookup():
    codes = random_sid_table(64, [4, 4, 4], seed=0)  # the full space: every SID is valid
    decoder = ToyRNNDecoder([4, 4, 4], seed=5)
    state = decoder.init_state(torch.arange(3))
    trie = SidTrie.build(codes, 4)
    free = constrained_beam_search(decoder, 3, trie, 64, 10, state=state, constrained=False)
    held = constrained_beam_search(decoder, 3, trie, 64, 10, state=state)
    assert torch.equal(free.items, trie.lookup(free.sids))
    assert_same_ranking(free.items, free.scores, held.items, held.scores)


def test_topk_beyond_the_catalog_pads():
    codes = torch.tensor([[0, 1], [2, 0], [2, 3]])
    decoder = ToyRNNDecoder([3, 4])
    trie = SidTrie.build(codes, [3, 4])
    got = constrained_beam_search(decoder, 2, trie, 8, 6, state=decoder.init_state(torch.arange(2)))
    assert got.items.shape == (2, 6) and got.sids.shape == (2, 6, 2)
    assert (got.items[:, 3:] == -1).all() and (got.scores[:, 3:] == float("-inf")).all()
    assert sorted(got.items[0, :3].tolist()) == [0, 1, 2]
    assert_valid(got, codes)


def test_level_with_fewer_codes_than_the_beam():
    """Level 0 allows 2 codes and K_0 = 2 < beam: the beam grows as the trie allows."""
    codes = random_sid_table(30, [2, 5, 6], seed=2)
    decoder = ToyRNNDecoder([2, 5, 6], seed=4)
    got = constrained_beam_search(
        decoder,
        1,
        SidTrie.build(codes, [2, 5, 6]),
        20,
        20,
        state=decoder.init_state(torch.tensor([7])),
    )
    assert_valid(got, codes)
    assert (got.items >= 0).sum() == 20


def test_low_precision_logits_score_in_float32():
    codes = random_sid_table(20, [4, 8], seed=0)
    base = ToyRNNDecoder([4, 8], seed=0)

    class Bf16:
        def step(self, tokens, state):
            logits, state = base.step(tokens, state)
            return logits.bfloat16(), state

        reorder = staticmethod(base.reorder)

    got = constrained_beam_search(
        Bf16(), 1, SidTrie.build(codes, [4, 8]), 4, 4, state=base.init_state(torch.tensor([0]))
    )
    assert got.scores.dtype == torch.float32
    assert_valid(got, codes)


def test_argument_errors():
    codes = torch.tensor([[0, 1], [1, 0]])
    trie, decoder = SidTrie.build(codes, 2), ToyRNNDecoder([2, 2])
    state = decoder.init_state(torch.tensor([0]))
    with pytest.raises(ValueError, match="raise beam_width"):
        constrained_beam_search(decoder, 1, trie, 2, 3, state=state)
    with pytest.raises(ValueError, match="constrained=True"):
        constrained_beam_search(
            decoder, 1, trie, 2, 2, state=state, renormalize=True, constrained=False
        )
    with pytest.raises(ValueError, match=r"expected logits \[1 x 3\]"):
        constrained_beam_search(decoder, 1, SidTrie.build(codes, [3, 2]), 2, 2, state=state)


@pytest.mark.parametrize("bad", [float("-inf"), float("nan")])
def test_a_model_that_rules_everything_out_returns_padding(bad):
    codes = random_sid_table(12, [3, 3, 3], seed=1)
    base = ToyRNNDecoder([3, 3, 3])

    class Broken:
        def step(self, tokens, state):
            logits, state = base.step(tokens, state)
            return torch.full_like(logits, bad), state

        reorder = staticmethod(base.reorder)

    state = base.init_state(torch.arange(2))
    for constrained in (True, False):
        got = constrained_beam_search(
            Broken(), 2, SidTrie.build(codes, 3), 4, 4, state=state, constrained=constrained
        )
        assert (got.items == -1).all() and (got.scores == float("-inf")).all()
