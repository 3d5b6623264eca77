"""H2Rec: each loss on a tiny hand-made case, the fusion weights and the scoring
of Eq. 9 on hand-set weights, causality and padding of every backbone, and the
state-dict round trip a bundle relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sidrec.models._backbones import BACKBONES
from sidrec.models._h2rec_losses import (
    alignment_positives,
    code_alignment_loss,
    cooccurrence_keys,
    granularity_loss,
    multi_positive_info_nce,
)
from sidrec.models.h2rec import H2Rec, H2RecConfig, h2rec, pca_reduce

N = 40
SIZES = [4, 4, 4]
TINY = {
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 2,
    "ffn_dim": 16,
    "dropout": 0.0,
    "max_len": 8,
}


def tiny(backbone="sasrec", **kw) -> H2Rec:
    torch.manual_seed(0)
    codes = np.random.default_rng(0).integers(0, 4, (N, 3))
    return h2rec(codes, SIZES, **{**TINY, **kw}, backbone=backbone).eval()


# ---------------------------------------------------------------- losses by hand


def test_info_nce_matches_the_formula_on_two_orthogonal_pairs():
    e = torch.eye(2)
    # cos = [[1, 0], [0, 1]], tau 1: each row -log(e / (e + 1)).
    expected = math.log(math.e + 1) - 1
    got = multi_positive_info_nce(e, e, torch.eye(2, dtype=torch.bool), tau=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Every key positive: the positives' sum is the whole sum, loss 0.
    assert multi_positive_info_nce(e, e, torch.ones(2, 2, dtype=torch.bool), 1.0).item() == (
        pytest.approx(0.0, abs=1e-6)
    )
    # tau 0.5 doubles the logits: -log(e^2 / (e^2 + 1)).
    half = multi_positive_info_nce(e, e, torch.eye(2, dtype=torch.bool), tau=0.5)
    assert half.item() == pytest.approx(math.log(math.e**2 + 1) - 2, rel=1e-6)


def test_code_alignment_loss_averages_both_directions():
    # sid_0 = sid_1 = x, hid_0 = x, hid_1 = y (orthogonal); only the diagonal positive.
    sid = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    hid = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.eye(2, dtype=torch.bool)
    # SID -> HID: row 0 logits [1, 0], positive 0; row 1 logits [1, 0], positive 1.
    s2h = ((math.log(math.e + 1) - 1) + (math.log(math.e + 1) - 0)) / 2
    # HID -> SID: row 0 logits [1, 1] -> log 2; row 1 logits [0, 0] -> log 2.
    h2s = math.log(2)
    got = code_alignment_loss(sid, hid, pos, tau=1.0)
    assert got.item() == pytest.approx((s2h + h2s) / 2, rel=1e-6)


def test_granularity_loss_is_symmetric_infonce_over_users():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    m = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # g -> m: row 0 logits [1, 1] -> log 2; row 1 logits [0, 0] -> log 2.
    # m -> g: row 0 logits [1, 0] -> log(e+1) - 1; row 1 logits [1, 0], positive 1 -> log(e+1).
    g2m = math.log(2)
    m2g = ((math.log(math.e + 1) - 1) + math.log(math.e + 1)) / 2
    assert granularity_loss(g, m, tau=1.0).item() == pytest.approx((g2m + m2g) / 2, rel=1e-6)


def test_cooccurrence_keys_stay_inside_each_sequence_and_window():
    items = np.array([5, 6, 7, 8, 9])  # user 0: 5 6 7, user 1: 8 9
    offsets = np.array([0, 3, 5])
    n = 10
    pairs = {(int(k) // n, int(k) % n) for k in cooccurrence_keys(items, offsets, 1, n)}
    assert pairs == {(5, 6), (6, 5), (6, 7), (7, 6), (8, 9), (9, 8)}  # no (7, 8): two users
    wide = {(int(k) // n, int(k) % n) for k in cooccurrence_keys(items, offsets, 2, n)}
    assert wide == pairs | {(5, 7), (7, 5)}
    assert len(cooccurrence_keys(items, offsets, 0, n)) == 0
    # A repeated item is not its own positive.
    assert len(cooccurrence_keys(np.array([3, 3]), np.array([0, 2]), 1, n)) == 0


def test_alignment_positives_union_of_code_matches_and_cooccurrence():
    codes = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    items = torch.arange(4)
    # Levels shared: (0,1) 2, (0,2) 1, (0,3) 0, (1,2) 2, (1,3) 1, (2,3) 2.
    code_only = alignment_positives(items, codes, 2, None, 4)
    expected = torch.tensor(
        [
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [0, 1, 1, 1],
            [0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(code_only, expected)
    keys = torch.as_tensor(cooccurrence_keys(np.array([0, 3]), np.array([0, 2]), 1, 4))
    both = alignment_positives(items, codes, 2, keys, 4)
    expected[0, 3] = expected[3, 0] = True
    assert torch.equal(both, expected)
    # t = L: only identical SIDs (and the item itself).
    assert torch.equal(
        alignment_positives(items, codes, 3, None, 4), torch.eye(4, dtype=torch.bool)
    )


# ------------------------------------------------------- the model's pieces by hand


def test_fusion_weights_fall_back_to_the_softmax_of_the_prior():
    model = tiny()
    with torch.no_grad():
        model.fusion[-1].weight.zero_()
        model.fusion[-1].bias.zero_()
    alpha = model.level_weights(torch.randn(2, 5, 16))
    expected = torch.softmax(torch.tensor([1.0, 0.6, 0.2]), 0)  # linspace(1, 0.2, 3)
    torch.testing.assert_close(alpha, expected.expand(2, 5, 3))


def test_scores_are_the_dot_product_of_the_concatenated_vectors():
    model = tiny()
    history = torch.tensor([[1, 2, 3]])
    u_hid, u_sid, _, _ = model.branches(history)
    user = torch.cat([u_hid[0, -1], u_sid[0, -1]])  # Eq. 9: [u_hid ; u_sid]
    codes = model.item_codes[:N]  # offset codes
    sid_item = model.codes.weight[codes].mean(1)  # [N x d]: mean of the L code vectors
    item = torch.cat([model.hid.weight[:N], sid_item], 1)
    torch.testing.assert_close(model.score(history)[0], item @ user)


def test_rank_loss_is_the_softmax_over_the_catalog_at_every_position():
    model = tiny(beta=0.0, gamma=0.0)
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    parts = model.losses(x[:, :-1], x[:, 1:])
    u_hid, u_sid, _, _ = model.branches(x[:, :-1])
    logits = torch.cat([u_hid, u_sid], -1) @ model.item_weight.T  # [2 x 3 x N]
    expected = -logits.log_softmax(-1).gather(-1, x[:, 1:, None]).mean()
    assert parts["rank"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["align"].item() == 0 and parts["granularity"].item() == 0
    assert model(x[:, :-1], x[:, 1:]).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_seen_penalty_adds_the_unlikelihood_of_the_items_read(backbone):
    """rank = CE + penalty * per-position sum of -log(1 - p(item read so far)); BERT4Rec's
    one honest position (the last) penalises the whole history."""
    model = tiny(backbone, beta=0.0, gamma=0.0, seen_penalty=0.5)
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    inputs, targets = x[:, :-1], x[:, 1:]
    u_hid, u_sid, _, _ = model.branches(inputs)
    logp = (torch.cat([u_hid, u_sid], -1) @ model.item_weight.T).log_softmax(-1)
    read = inputs[:, None, :].expand(-1, 3, -1)  # position t's row: items 0..t
    unlikely = -torch.log1p(-logp.gather(-1, read).exp()) * torch.ones(3, 3).tril()
    ce, unlikely = -logp.gather(-1, targets[..., None])[..., 0], unlikely.sum(-1)
    if backbone == "bert4rec":
        ce, unlikely = ce[:, -1], unlikely[:, -1]
    expected = (ce + 0.5 * unlikely).mean()
    assert model.losses(inputs, targets)["rank"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_granularity_views_agree_when_the_mask_vector_equals_the_codes():
    model = tiny(gamma=1.0)
    # Give every code of level l the vector level_mask[l]: masking a level changes nothing,
    # so the masked and the global view are the same and Eq. 8 reduces to g vs g.
    with torch.no_grad():
        start = 0
        for level, k in enumerate(SIZES):
            model.codes.weight[start : start + k] = model.level_mask[level]
            start += k
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    _, u_sid, _, _ = model.branches(x)
    expected = granularity_loss(u_sid[:, -1], u_sid[:, -1], model.cfg.tau)
    assert model.losses(x, x)["granularity"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_alignment_term_uses_the_batch_targets_and_their_positives():
    model = tiny(beta=1.0, code_threshold=3, window=0)
    targets = torch.tensor([[1, 2], [3, 4]])
    items = torch.tensor([2, 4])  # distinct last-position targets, sorted
    sid = model.codes(model.item_codes[items]).mean(-2)
    pos = alignment_positives(items, model.item_codes, 3, None, N)
    expected = code_alignment_loss(sid, model.hid(items), pos, model.cfg.tau)
    got = model.losses(torch.tensor([[0, 1], [2, 3]]), targets)["align"]
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


# ------------------------------------------------------------------ backbones


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_padding_does_not_change_a_users_scores(backbone):
    model = tiny(backbone)
    histories = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9, 10])]
    together = model.score(histories)
    for row, h in enumerate(histories):
        torch.testing.assert_close(together[row], model.score([h])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_causal_backbones_never_read_the_future(backbone):
    model = tiny(backbone)
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[1, 2, 3, 9, 7]])  # differs from position 3 on
    ua, sa, _, _ = model.branches(a)
    ub, sb, _, _ = model.branches(b)
    torch.testing.assert_close(ua[:, :3], ub[:, :3])
    torch.testing.assert_close(sa[:, :3], sb[:, :3])
    assert not torch.allclose(ua[:, 3:], ub[:, 3:])


def test_bert4rec_trains_on_the_last_position_only():
    model = tiny("bert4rec", beta=0.0, gamma=0.0)
    x = torch.tensor([[1, 2, 3, 4]])
    ignored = torch.tensor([[-1, -1, 4]])
    full = torch.tensor([[2, 3, 4]])
    # Earlier targets would be leaks in a bidirectional encoder: they must not count.
    assert model(x[:, :-1], full).item() == pytest.approx(model(x[:, :-1], ignored).item())


# ------------------------------------------------------------- init and config


def test_pca_init_keeps_the_principal_directions_at_xavier_scale():
    gen = torch.Generator().manual_seed(0)
    signal = torch.randn(N, 1, generator=gen) * torch.tensor([[3.0] + [0.0] * 31])
    emb = signal + 0.01 * torch.randn(N, 32, generator=gen)
    reduced = pca_reduce(emb, 4, std=0.1)
    assert reduced.shape == (N, 4)
    assert reduced.std().item() == pytest.approx(0.1, rel=1e-4)
    # The first component carries the signal: it is (up to sign) the signal's column.
    corr = torch.corrcoef(torch.stack([reduced[:, 0], signal[:, 0]]))[0, 1].abs()
    assert corr > 0.99
    model = h2rec(np.zeros((N, 3), np.int64), SIZES, **TINY, item_embeddings=emb.numpy())
    xavier = math.sqrt(2.0 / (N + 1 + 16))
    torch.testing.assert_close(model.hid.weight[:N], pca_reduce(emb, 16, xavier))
    assert model.hid.weight[N].abs().sum() == 0  # padding row


def test_bad_config_and_codes_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="code_threshold"):
        h2rec(np.zeros((N, 3), np.int64), SIZES, **TINY, code_threshold=4)
    with pytest.raises(ValueError, match="backbone"):
        h2rec(np.zeros((N, 3), np.int64), SIZES, **TINY, backbone="lstm")
    with pytest.raises(ValueError, match="codes: level l must lie in"):
        h2rec(np.full((N, 3), 4, np.int64), SIZES, **TINY)
    with pytest.raises(ValueError, match="item_embeddings"):
        h2rec(np.zeros((N, 3), np.int64), SIZES, **TINY, item_embeddings=np.zeros((N, 8)))


def test_config_and_state_dict_rebuild_the_same_model():
    model = tiny(beta=0.3, window=2)
    rebuilt = H2Rec(H2RecConfig(**model.cfg.to_dict()))
    rebuilt.load_state_dict(model.state_dict())  # codes travel as a buffer
    rebuilt.eval()
    histories = [np.array([1, 2, 3]), np.array([7, 8])]
    torch.testing.assert_close(rebuilt.score(histories), model.score(histories))
    assert "cooc_keys" not in model.state_dict()


def test_a_training_step_moves_every_branch():
    model = tiny(beta=0.5, gamma=0.5).train()
    model.set_cooccurrence(torch.as_tensor(cooccurrence_keys(np.arange(N), np.array([0, N]), 2, N)))
    x = torch.randint(0, N, (8, 6), generator=torch.Generator().manual_seed(1))
    model(x[:, :-1], x[:, 1:]).backward()
    parts = ("hid.", "codes", "prior", "fusion", "cross", "level_mask", "sid_", "hid_")
    for name in parts:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name


def test_a_batch_of_one_still_reaches_every_parameter():
    # DDP fails on a parameter without a gradient; a length bucket may give a rank one row.
    model = tiny(beta=0.5, gamma=0.5).train()
    x = torch.tensor([[1, 2, 3, 4]])
    model(x[:, :-1], x[:, 1:]).backward()
    assert model.level_mask.grad is not None
    assert all(p.grad is not None for p in model.parameters())
