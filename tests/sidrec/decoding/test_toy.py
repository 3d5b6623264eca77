"""sidrec.decoding.toy: random SID tables, and toy decoders whose state must follow the beams."""

from __future__ import annotations

import pytest
import torch

from sidrec.decoding import (
    SidTrie,
    ToyRNNDecoder,
    ToyTransformerDecoder,
    constrained_beam_search,
    random_sid_table,
)
from sidrec.decoding import _reference as ref


@pytest.mark.parametrize(("n", "sizes"), [(64, [4, 4, 4]), (10, [2, 5]), (5_000, [256, 256, 256])])
def test_random_sid_table_rows_are_distinct_and_in_range(n, sizes):
    codes = random_sid_table(n, sizes, seed=1)
    assert codes.shape == (n, len(sizes))
    assert torch.unique(codes, dim=0).shape[0] == n
    assert all(int(codes[:, lv].max()) < k for lv, k in enumerate(sizes))
    assert torch.equal(codes, random_sid_table(n, sizes, seed=1))  # deterministic
    with pytest.raises(ValueError, match="distinct SIDs"):
        random_sid_table(11, [2, 5])


class SwappedReorder:
    """A decoder whose reorder gives each beam its neighbour's state: a classic KV-cache bug."""

    def __init__(self, decoder):
        self.decoder = decoder

    def step(self, tokens, state):
        return self.decoder.step(tokens, state)

    def reorder(self, state, index):
        return self.decoder.reorder(state, index.flip(0))


def test_a_reorder_bug_changes_the_result():
    """The toy state carries the prefix, so the property tests would catch a reorder bug."""
    codes = random_sid_table(40, [4, 4, 4], seed=0)
    decoder = ToyRNNDecoder([4, 4, 4], seed=3)
    state = decoder.init_state(torch.tensor([5]))
    trie = SidTrie.build(codes, 4)
    good = constrained_beam_search(decoder, 1, trie, 40, 10, state=state)
    bad = constrained_beam_search(SwappedReorder(decoder), 1, trie, 40, 10, state=state)
    _, want = ref.topk_from_scores(ref.exhaustive_scores(decoder, 1, codes, state), 10)
    torch.testing.assert_close(good.scores, want, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(bad.scores, want, rtol=1e-3, atol=1e-3)


def test_transformer_decoder_wide_beam_equals_exhaustive_per_user():
    """KV cache, grouped cross-attention and reorder of the benchmark decoder are exact."""
    sizes = [5, 4, 6]
    codes = random_sid_table(50, sizes, seed=2)
    decoder = ToyTransformerDecoder(
        sizes, d_model=16, num_layers=2, num_heads=2, head_dim=8, ffn_dim=32, memory_len=5
    )
    users = torch.tensor([3, 8, 11])
    got = constrained_beam_search(
        decoder, 3, SidTrie.build(codes, sizes), 50, 8, state=decoder.init_state(users)
    )
    for row, user in enumerate(users.tolist()):
        # one user per reference run: this decoder relies on the batch-major row layout
        scores = ref.exhaustive_scores(decoder, 1, codes, decoder.init_state(torch.tensor([user])))
        items, want = ref.topk_from_scores(scores, 8)
        torch.testing.assert_close(got.scores[row : row + 1], want, rtol=1e-4, atol=1e-4)
        assert got.items[row].tolist() == items[0].tolist()


def test_toy_decoders_leave_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ToyTransformerDecoder([4, 4], d_model=8, num_layers=1, num_heads=1, head_dim=8, ffn_dim=8)
    ToyRNNDecoder([4, 4])
    assert torch.equal(torch.rand(3), expected)
