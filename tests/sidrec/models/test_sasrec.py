"""SASRec: both losses against their formulas, negatives, causality, padding, builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidrec.models.sasrec import (
    SASRecConfig,
    bce_one_negative_loss,
    full_softmax_loss,
    history_ids,
    pad_histories,
    sample_negatives,
    sasrec,
    sasrec_beauty,
)


def tiny(loss="ce", num_items=30, max_len=8, dropout=0.0, seen_penalty=0.0):
    torch.manual_seed(0)
    return sasrec(
        num_items,
        d_model=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=16,
        dropout=dropout,
        max_len=max_len,
        loss=loss,
        seen_penalty=seen_penalty,
    )


def test_full_softmax_loss_is_cross_entropy_over_every_item_ignoring_padding():
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(6, 4, generator=g), torch.randn(10, 4, generator=g)
    targets = torch.tensor([0, 3, 9, -1, 5, -1])
    logp = (hidden @ weight.T).log_softmax(-1)
    keep = targets >= 0
    expected = -logp[keep, targets[keep]].mean()
    torch.testing.assert_close(full_softmax_loss(hidden, targets, weight), expected)


def test_bce_one_negative_loss_is_sasrec_eq7():
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(5, 4, generator=g), torch.randn(10, 4, generator=g)
    targets, negatives = torch.tensor([1, 2, -1, 7, 0]), torch.tensor([4, 5, 6, 8, 9])
    keep = targets >= 0
    pos = (hidden[keep] * weight[targets[keep]]).sum(-1)
    neg = (hidden[keep] * weight[negatives[keep]]).sum(-1)
    expected = -(torch.log(torch.sigmoid(pos)) + torch.log(1 - torch.sigmoid(neg))).mean()
    got = bce_one_negative_loss(hidden, targets, negatives, weight)
    torch.testing.assert_close(got, expected)
    # Stable where the naive formula overflows: huge logits give finite losses.
    assert torch.isfinite(bce_one_negative_loss(hidden * 1e4, targets, negatives, weight))


def test_negatives_avoid_the_users_own_items():
    g = torch.Generator().manual_seed(2)
    inputs = torch.randint(0, 1000, (64, 10), generator=g)
    targets = torch.randint(0, 1000, (64, 10), generator=g)
    neg = sample_negatives(targets, inputs, 1000, generator=g)
    assert neg.shape == targets.shape and int(neg.min()) >= 0 and int(neg.max()) < 1000
    seen = torch.cat([inputs, targets], 1)
    assert not (neg[..., None] == seen[:, None, :]).any()


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_both_losses_learn_a_deterministic_sequence(loss):
    """item i is always followed by i + 1: a few hundred steps rank it first."""
    model = tiny(loss, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(3)
    for _ in range(150):
        start = torch.randint(0, 21, (32, 1), generator=g)
        seq = start + torch.arange(9)  # [32 x 9], items < 30
        loss_value = model(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss_value.backward()
        opt.step()
    model.eval()
    histories = [np.arange(s, s + 5) for s in range(0, 20, 3)]
    scores = model.score(histories)
    # BCE never draws a user's own items as negatives, so it may keep them high:
    # rank the unseen items (the exclude_seen protocol).
    for row, h in enumerate(histories):
        scores[row, h] = -torch.inf
    top = scores.argmax(1)
    assert top.tolist() == [h[-1] + 1 for h in histories]


def test_position_t_sees_only_items_up_to_t():
    model = tiny().eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[1, 2, 3, 9, 9, 9]])
    ha, hb = model.hidden(a), model.hidden(b)
    torch.testing.assert_close(ha[:, :3], hb[:, :3])
    assert not torch.allclose(ha[:, 3:], hb[:, 3:])


def test_scores_do_not_depend_on_padding_or_on_other_rows():
    model = tiny().eval()
    short, long = np.array([4, 5]), np.arange(1, 12)  # long > max_len: its last 8 are read
    alone = model.score([short])
    batched = model.score([long, short])
    torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[:1], model.score([long[-8:]]), rtol=1e-5, atol=1e-5)
    assert batched.shape == (2, 30)


def test_padded_training_batch_equals_the_dense_one():
    model = tiny().eval()
    seq = torch.tensor([[3, 4, 5, 6]])
    dense = model(seq[:, :-1], seq[:, 1:])
    padded_in = torch.tensor([[-1, -1, 3, 4, 5]])
    padded_tg = torch.tensor([[-1, -1, 4, 5, 6]])
    padded = model(padded_in, padded_tg, valid=padded_in >= 0)
    torch.testing.assert_close(padded, dense, rtol=1e-5, atol=1e-5)


def test_pad_histories_left_pads_and_truncates():
    out = pad_histories([np.array([1, 2, 3]), np.array([7])], max_len=2)
    assert out.tolist() == [[2, 3], [-1, 7]]


def test_sasrec_beauty_writes_out_the_issue_values():
    model = sasrec_beauty(12101)
    assert model.cfg == SASRecConfig(12101, 64, 2, 1, 64, 0.5, 50, "ce")
    assert sasrec_beauty(100, loss="bce").cfg.loss == "bce"
    with pytest.raises(ValueError, match="loss must be one of"):
        sasrec_beauty(100, loss="bpr")


def test_full_softmax_gradient_matches_autograd_of_the_reference():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(3, 4, generator=g, requires_grad=True)
    weight = torch.randn(6, 4, generator=g)
    targets = torch.tensor([1, 0, 5])
    full_softmax_loss(hidden, targets, weight).backward()
    ref = hidden.detach().clone().requires_grad_(True)
    F.cross_entropy(ref @ weight.T, targets).backward()
    torch.testing.assert_close(hidden.grad, ref.grad)


def reference_seen_loss(logits, targets, seen, penalty):
    """CE + penalty * per-position sum of -log(1 - p(seen item)), by autograd."""
    keep = targets >= 0
    logp = logits.log_softmax(-1)
    ce = -logp[keep, targets[keep]].sum()
    seen_logp = logp.gather(-1, seen.clamp(min=0))
    unlikely = (-torch.log1p(-seen_logp.exp()) * ((seen >= 0) & keep[:, None])).sum()
    return (ce + penalty * unlikely) / keep.sum()


def test_history_ids_hold_the_items_read_so_far_except_the_target():
    inputs = torch.tensor([[-1, 3, 5, 7]])
    targets = torch.tensor([[3, 5, 3, 9]])  # position 2's target repeats item 3
    assert history_ids(inputs, targets).tolist() == [
        [[-1, -1, -1, -1], [-1, 3, -1, -1], [-1, -1, 5, -1], [-1, 3, 5, 7]]
    ]


def test_seen_penalty_loss_and_gradient_equal_the_unlikelihood_formula():
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(7, 4, generator=g, dtype=torch.double, requires_grad=True)
    weight = torch.randn(11, 4, generator=g, dtype=torch.double)
    targets = torch.tensor([1, 2, -1, 4, 5, 6, 0])
    seen = torch.tensor([[3, -1], [2, 7], [1, 1], [-1, -1], [0, 9], [6, 2], [10, 4]])
    got = full_softmax_loss(hidden, targets, weight, seen, 0.7)
    got.backward()
    ref_hidden = hidden.detach().clone().requires_grad_(True)
    expected = reference_seen_loss(ref_hidden @ weight.T, targets, seen, 0.7)
    expected.backward()
    torch.testing.assert_close(got, expected.float())
    torch.testing.assert_close(hidden.grad, ref_hidden.grad)
    # Weight 0 or no seen items: plain cross-entropy.
    plain = full_softmax_loss(hidden, targets, weight)
    torch.testing.assert_close(full_softmax_loss(hidden, targets, weight, seen, 0.0), plain)
    no_seen = torch.full_like(seen, -1)
    torch.testing.assert_close(full_softmax_loss(hidden, targets, weight, no_seen, 0.7), plain)


def test_seen_penalty_stays_finite_when_a_seen_item_takes_all_the_mass():
    hidden = torch.tensor([[1.0, 0.0]]) * 1e3
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = full_softmax_loss(hidden, torch.tensor([1]), weight, torch.tensor([[0]]), 1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(weight.grad).all()


def test_seen_penalty_lowers_the_users_own_items():
    """On sequences that never repeat an item (random permutations), the penalty
    moves the model's mass off the items already read faster than CE alone."""

    def sequences(g, rows):
        return torch.stack([torch.randperm(30, generator=g)[:9] for _ in range(rows)])

    def seen_mass(penalty):
        model = tiny(dropout=0.0, seen_penalty=penalty)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(6)
        for _ in range(200):
            seq = sequences(g, 32)
            loss = model(seq[:, :-1], seq[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
        histories = sequences(torch.Generator().manual_seed(7), 64)[:, :8]
        p = model.eval().score(histories).softmax(-1)
        return float(p.gather(-1, histories).sum(-1).mean())

    plain, penalised = seen_mass(0.0), seen_mass(4.0)  # 0.26 (uniform: 8/30) and 0.17
    assert penalised < 0.8 * plain, (plain, penalised)


def test_seen_penalty_is_checked_and_kept_in_the_config():
    assert tiny(seen_penalty=0.5).cfg.seen_penalty == 0.5
    with pytest.raises(ValueError, match="seen_penalty must be >= 0"):
        tiny(seen_penalty=-1.0)
    with pytest.raises(ValueError, match="needs loss 'ce'"):
        tiny(loss="bce", seen_penalty=1.0)
