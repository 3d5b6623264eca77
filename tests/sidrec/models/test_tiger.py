"""TIGER: shapes, the DecoderStep protocol against teacher forcing, beam search through
sidrec.decoding, padding, hierarchy-aware SID embeddings, builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.data.sids import SidTable
from sidrec.decoding import SidTrie, constrained_beam_search, random_sid_table
from sidrec.models.tiger import (
    TigerConfig,
    hash_users,
    hidvae_recommender,
    tag_path_texts,
    tiger,
    tiger_small,
)

SIZES = [5, 4, 3]


def tiny(num_items=40, hierarchy_aware=False, seed=0, text_dim=7):
    codes = random_sid_table(num_items, SIZES, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    text = torch.randn(sum(SIZES), text_dim, generator=g) if hierarchy_aware else None
    torch.manual_seed(seed)
    model = tiger(
        codes,
        SIZES,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_model=32,
        num_heads=3,
        head_dim=8,
        ffn_dim=64,
        dropout=0.1,
        num_user_tokens=10,
        max_history=6,
        hierarchy_aware=hierarchy_aware,
        tag_text=text,
    )
    return model, codes


def batch(b=4, s=5, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(n, (b, s), generator=g),
        torch.randint(-1, 100, (b,), generator=g),
        torch.randint(n, (b,), generator=g),
    )


@pytest.mark.parametrize("hierarchy_aware", [False, True])
def test_forward_shapes(hierarchy_aware):
    model, _ = tiny(hierarchy_aware=hierarchy_aware)
    history, users, targets = batch()
    memory, mask = model.encode_memory(history, users)
    assert memory.shape == (4, 1 + 5 * 3, 32) and mask is None
    logits = model.logits(history, users, targets)
    assert [tuple(lg.shape) for lg in logits] == [(4, 5), (4, 4), (4, 3)]
    loss = model(history, users, targets)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("hierarchy_aware", [False, True])
def test_incremental_steps_equal_teacher_forcing(hierarchy_aware):
    """step/reorder (KV cache, per-user memory) give the logits of the full decoder pass."""
    model, _ = tiny(hierarchy_aware=hierarchy_aware)
    model.eval()
    history, users, targets = batch()
    want = model.logits(history, users, targets)
    codes = model.item_codes[targets]
    state = model.encode(history, users)
    tokens = torch.zeros(4, 0, dtype=torch.long)
    for t in range(3):
        logits, state = model.step(tokens, state)
        torch.testing.assert_close(logits, want[t], rtol=1e-4, atol=1e-5)
        tokens = torch.cat([tokens, codes[:, t : t + 1]], 1)
        # expand to 2 beams per user (batch-major), as the search does, and back
        state = model.reorder(state, torch.arange(4).repeat_interleave(2))
        tokens = tokens.repeat_interleave(2, 0)
        state = model.reorder(state, torch.arange(0, 8, 2))
        tokens = tokens[::2]


def test_left_padding_with_a_mask_changes_nothing():
    model, _ = tiny()
    model.eval()
    history, users, targets = batch(s=3)
    padded = torch.cat([torch.full((4, 2), -1), history], 1)
    a = model.logits(history, users, targets)
    b = model.logits(padded, users, targets, valid=padded >= 0)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_beam_search_over_tiger_is_exact_with_a_full_beam():
    """beam >= N: the top items are the exhaustive ranking by sum of level log-probs."""
    model, codes = tiny(num_items=40)
    model.eval()
    history, users, _ = batch(b=3)
    trie = SidTrie.build(codes, SIZES)
    result = constrained_beam_search(
        model, 3, trie, beam_width=60, topk=10, state=model.encode(history, users)
    )
    # exhaustive: teacher-force every item for every user
    all_items = torch.arange(40)
    scores = torch.zeros(3, 40)
    for row in range(3):
        logits = model.logits(
            history[row : row + 1].expand(40, -1), users[row : row + 1].expand(40), all_items
        )
        scores[row] = sum(
            lg.log_softmax(-1).gather(1, codes[:, t : t + 1]).squeeze(1)
            for t, lg in enumerate(logits)
        )
    want = scores.topk(10, dim=1)
    torch.testing.assert_close(result.scores, want.values, rtol=1e-4, atol=1e-4)
    assert result.items.tolist() == want.indices.tolist()


def test_beam_search_returns_only_real_items_at_beam_20():
    model, codes = tiny(num_items=40, hierarchy_aware=True)
    model.eval()
    history, users, _ = batch(b=5)
    trie = SidTrie.build(codes, SIZES)
    items = constrained_beam_search(
        model, 5, trie, beam_width=20, topk=20, state=model.encode(history, users)
    ).items
    assert items.shape == (5, 20)
    assert int(items.min()) >= 0 and int(items.max()) < 40
    assert all(len(set(row)) == 20 for row in items.tolist())


def test_hierarchy_aware_text_is_a_frozen_buffer_that_matters():
    model, _ = tiny(hierarchy_aware=True)
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.endswith(".text") for n in names)
    assert "sid_embedding.text" in model.state_dict()
    model.eval()
    history, users, targets = batch()
    before = model(history, users, targets)
    other = torch.randn(model.sid_embedding.text.shape, generator=torch.Generator().manual_seed(9))
    model.sid_embedding.set_text(other)
    assert not torch.allclose(before, model(history, users, targets))


def test_hierarchy_aware_needs_text():
    with pytest.raises(ValueError, match="set hierarchy_aware=False"):
        tiny_codes = random_sid_table(10, SIZES)
        tiger_small(tiny_codes, SIZES, tag_text=None, hierarchy_aware=True)


def test_builders_write_out_the_papers_values():
    codes = random_sid_table(50, [8, 8, 8])
    small = tiger_small(codes, [8, 8, 8]).cfg
    assert (small.num_encoder_layers, small.num_decoder_layers, small.d_model) == (4, 4, 128)
    assert (small.num_heads, small.head_dim, small.ffn_dim, small.dropout) == (6, 64, 1024, 0.1)
    assert (small.num_user_tokens, small.max_history, small.hierarchy_aware) == (2000, 20, False)
    hid = hidvae_recommender(codes, [8, 8, 8], tag_text=torch.zeros(24, 4)).cfg
    assert (hid.num_encoder_layers, hid.num_decoder_layers, hid.num_heads, hid.d_model) == (
        6,
        6,
        8,
        512,
    )
    assert hid.hierarchy_aware and hid.text_dim == 4
    assert TigerConfig(**small.to_dict()) == small


def test_hash_users_is_deterministic_with_a_bucket_for_unknown_users():
    users = torch.tensor([0, 1, 2, 12345, -1])
    a, b = hash_users(users, 2000), hash_users(users.clone(), 2000)
    assert a.tolist() == b.tolist()
    assert a[-1] == 2000 and int(a[:-1].max()) < 2000


def test_tag_path_texts_vote_per_code_and_leave_the_suffix_empty():
    codes = np.array([[0, 1], [0, 1], [1, 0]])
    table = SidTable(
        codes,
        np.array([0, 1, 0]),
        [2, 2],
        tags=[["Makeup", "Nails"], ["Makeup", "Nails"], ["Skin", ""]],
    )
    texts = tag_path_texts(table)  # levels: 2 + 2 + disambiguation 2
    assert texts == ["Makeup", "Skin", "Skin", "Makeup > Nails", "", ""]
