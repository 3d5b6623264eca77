"""Each loss on tiny hand-made cases, and the hashed collision finder against
the all-pairs scan."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.tokenizers.losses import (
    colliding_pairs,
    colliding_pairs_reference,
    focal_loss,
    info_nce,
    uniqueness_loss,
    vq_loss,
)


def test_vq_loss_is_codebook_plus_beta_commitment():
    r = torch.tensor([[1.0, 0.0]], requires_grad=True)
    e = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = vq_loss(r, e, commitment_weight=0.25)
    assert loss.item() == pytest.approx(1.25)  # ||r - e||² (1 + β)
    loss.backward()
    # The codeword moves by the codebook term, the encoder by β times the commitment.
    torch.testing.assert_close(e.grad, torch.tensor([[-2.0, 0.0]]))
    torch.testing.assert_close(r.grad, torch.tensor([[0.5, 0.0]]))


def test_focal_loss_equals_cross_entropy_at_gamma_zero():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g)
    targets = torch.randint(0, 5, (7,), generator=g)
    torch.testing.assert_close(focal_loss(logits, targets, 0.0), F.cross_entropy(logits, targets))


def test_focal_loss_hand_case_and_down_weighting():
    # p_t = 0.8 for a two-class logit pair (log 4, 0): -(0.2)^2 log 0.8.
    logits = torch.tensor([[math.log(4.0), 0.0]])
    target = torch.tensor([0])
    assert focal_loss(logits, target, 2.0).item() == pytest.approx(-(0.2**2) * math.log(0.8))
    assert focal_loss(logits, target, 2.0) < focal_loss(logits, target, 0.0)


def test_masked_rows_do_not_count_and_empty_mask_is_zero():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]], requires_grad=True)
    targets = torch.tensor([0, -1])  # second item has no tag
    mask = targets >= 0
    torch.testing.assert_close(
        focal_loss(logits, targets, 0.0, mask), F.cross_entropy(logits[:1], targets[:1])
    )
    none = focal_loss(logits, targets, 2.0, torch.zeros(2, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_info_nce_hand_case():
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    keys = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    targets = torch.tensor([0, 1])
    tau = 0.5
    # Cosines of query 0: (1, 0, -1); of query 1: (0, 1, 0).
    row0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    row1 = -math.log(math.exp(2) / (1 + math.exp(2) + 1))
    assert info_nce(queries, keys, targets, tau).item() == pytest.approx(
        (row0 + row1) / 2, rel=1e-6
    )
    # Masking the second row leaves the first.
    masked = info_nce(queries, keys, targets, tau, torch.tensor([True, False]))
    assert masked.item() == pytest.approx(row0, rel=1e-6)


def test_uniqueness_loss_zero_without_collisions():
    z = torch.randn(4, 3, requires_grad=True)
    codes = torch.tensor([[0, 1], [0, 2], [1, 1], [2, 2]])
    loss, pairs = uniqueness_loss(z, codes, margin=0.9)
    assert pairs == 0 and loss.item() == 0.0


def test_uniqueness_loss_positive_on_colliding_similar_items_and_pushes_them_apart():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]], requires_grad=True)
    codes = torch.tensor([[3, 4], [3, 4], [3, 5]])  # items 0 and 1 collide
    loss, pairs = uniqueness_loss(z, codes, margin=0.9)
    cos = F.cosine_similarity(z[0], z[1], dim=0).item()
    assert pairs == 1
    assert loss.item() == pytest.approx(cos - 0.9)
    loss.backward()
    assert z.grad[2].abs().sum() == 0  # the non-colliding item is untouched
    stepped = (z - 0.5 * z.grad).detach()
    assert F.cosine_similarity(stepped[0], stepped[1], dim=0) < cos


def test_uniqueness_loss_ignores_colliding_pairs_already_below_the_margin():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosine 0 < m
    loss, pairs = uniqueness_loss(z, torch.tensor([[1, 1], [1, 1]]), margin=0.9)
    assert pairs == 1 and loss.item() == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=2), min_size=0, max_size=40))
def test_hashed_pairs_match_the_all_pairs_scan(rows):
    codes = torch.tensor(rows, dtype=torch.long).reshape(-1, 2)
    got = set(zip(*(t.tolist() for t in colliding_pairs(codes)), strict=True))
    want = set(zip(*(t.tolist() for t in colliding_pairs_reference(codes)), strict=True))
    assert got == want


def test_pair_cap_samples_only_real_pairs():
    codes = torch.zeros(50, 3, dtype=torch.long)  # everything collides: 1225 pairs
    codes[40:, 0] = 1  # ... except a second group of 10
    i, j = colliding_pairs(codes, max_pairs=100, generator=torch.Generator().manual_seed(0))
    assert len(i) == 100
    assert (i < j).all()
    assert (codes[i] == codes[j]).all()
