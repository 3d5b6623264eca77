"""RQ-VAE and HiD-VAE modules, their configs and builders."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from sidrec.data import DataError
from sidrec.tokenizers import (
    HiDVAEConfig,
    RQVAEConfig,
    hidvae_beauty,
    hidvae_beauty_no_uniqueness,
    rqkmeans_default,
    rqvae_tiger,
)
from sidrec.tokenizers.pipeline import apply_overrides

TINY = dict(hidden_dims=(32,), latent_dim=8, codebook_size=8, batch_size=64, epochs=2)


def _data(n=64, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def test_builders_write_out_the_published_values():
    tiger = rqvae_tiger()
    assert (tiger.levels, tiger.codebook_size, tiger.latent_dim) == (3, 256, 32)
    assert tiger.hidden_dims == (512, 256, 128) and tiger.commitment_weight == 0.25
    hid = hidvae_beauty()
    assert (hid.levels, hid.codebook_size, hid.optimizer, hid.lr) == (3, 256, "adamw", 3e-4)
    assert (hid.temperature, hid.focal_gamma, hid.unique_margin) == (0.07, 2.0, 0.9)
    assert (hid.commitment_weight, hid.align_weight, hid.pred_weight, hid.unique_weight) == (
        0.25,
        1.0,
        1.0,
        2.0,
    )
    assert hidvae_beauty_no_uniqueness().unique_weight == 0.0
    assert rqkmeans_default().codebook_size == 256


def test_rqvae_losses_and_gradients():
    cfg = dataclasses.replace(rqvae_tiger(), **TINY)
    model = cfg.build(12)
    x = _data()
    model.init_codebooks(x)
    out = model(x)
    assert set(out) == {"loss", "recon_loss", "vq_loss", "codes"}
    assert out["codes"].shape == (64, 3) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.decoder[-1].weight.grad.abs().sum() > 0
    assert model.quantizer.codebooks.grad.abs().sum() > 0
    tok = model.tokenize(x)
    assert torch.equal(tok["codes"], model.codes(x)) and tok["recon_error"].shape == (64,)


def _hidvae(**changes):
    cfg = dataclasses.replace(hidvae_beauty(), **{**TINY, **changes})
    model = cfg.build(12, [3, 5, 7])
    model.set_tag_embeddings([torch.randn(t, 12).numpy() for t in (3, 5, 7)])
    model.init_codebooks(_data())
    return model


def test_hidvae_total_loss_is_eq8_and_missing_tags_are_masked():
    model = _hidvae()
    x = _data()
    tags = torch.stack([torch.arange(64) % 3, torch.arange(64) % 5, torch.full((64,), -1)], 1)
    out = model(x, tags)
    cfg = model.cfg
    expected = (
        out["recon_loss"]
        + out["vq_loss"]
        + cfg.align_weight * out["align_loss"]
        + cfg.pred_weight * out["pred_loss"]
        + cfg.unique_weight * out["unique_loss"]
    )
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    # Level 2 has no tag anywhere: its classifier gets no gradient, the others do.
    assert model.classifiers[2][-1].weight.grad.abs().sum() == 0
    assert model.classifiers[0][-1].weight.grad.abs().sum() > 0
    assert model.projectors[1][-1].weight.grad.abs().sum() > 0
    assert model.tokenize(x)["tags"].shape == (64, 3)


def test_classifier_capacity_grows_with_depth():
    model = _hidvae()
    widths = [head[0].out_features for head in model.classifiers]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def _eq7_pair_loop(z, codes, margin):
    """HiD-VAE Eq. 7 as the paper writes it, one pair at a time: the mean over
    pairs of items sharing a full SID of max(0, cos(z_i, z_j) - m)."""
    terms = []
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            if torch.equal(codes[i], codes[j]):
                cos = torch.dot(z[i], z[j]) / (z[i].norm() * z[j].norm())
                terms.append(max(cos.item() - margin, 0.0))
    return sum(terms) / len(terms)


def test_uniqueness_term_is_eq7_and_the_ablation_drops_exactly_it():
    # 64 items on 2 codes collide; margin 0 keeps most colliding pairs in the hinge.
    full = _hidvae(codebook_size=2, levels=1, unique_margin=0.0)
    ablation = copy.deepcopy(full)
    ablation.cfg = dataclasses.replace(full.cfg, unique_weight=0.0)
    x, tags = _data(), torch.zeros(64, 3, dtype=torch.long)
    torch.manual_seed(0)
    with_term = full(x, tags)
    torch.manual_seed(0)
    without = ablation(x, tags)
    reference = _eq7_pair_loop(full.rq.encoder(x).detach(), with_term["codes"], 0.0)
    assert reference > 0.01  # the term is active, so dropping it must show
    torch.testing.assert_close(with_term["unique_loss"].item(), reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        (with_term["loss"] - without["loss"]).item(),
        full.cfg.unique_weight * reference,
        rtol=1e-4,
        atol=1e-5,
    )
    assert without["colliding_pairs"].item() > 0  # collisions are still counted


def test_hidvae_without_tags_is_a_clear_error():
    with pytest.raises(DataError, match="needs item tags") as err:
        hidvae_beauty().build(12, None)
    assert err.value.field == "categories"


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        (rqvae_tiger(), "codebook_size"),  # K = 256 > 100 items
        (dataclasses.replace(hidvae_beauty(), codebook_size=8, temperature=0.0), "temperature"),
        (dataclasses.replace(hidvae_beauty(), codebook_size=8, tag_levels=5), "tag_levels"),
        (dataclasses.replace(rqvae_tiger(), codebook_size=8, optimizer="sgd"), "optimizer"),
        (rqkmeans_default(), "codebook_size"),
    ],
)
def test_bad_configs_name_the_field(cfg, field):
    with pytest.raises(ValueError, match=field):
        cfg.validate(num_items=100)


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(
        hidvae_beauty(),
        [
            "unique_margin=0.8",
            "hidden_dims=64,32",
            "reseed_dead_codes=false",
            "tag_levels=2",
            "epochs=5",
        ],
    )
    assert isinstance(cfg, HiDVAEConfig)
    assert (
        cfg.unique_margin,
        cfg.hidden_dims,
        cfg.reseed_dead_codes,
        cfg.tag_levels,
        cfg.epochs,
    ) == (
        0.8,
        (64, 32),
        False,
        2,
        5,
    )
    with pytest.raises(ValueError, match="no field 'no_such_field'; fields are"):
        apply_overrides(RQVAEConfig(), ["no_such_field=1"])
    with pytest.raises(ValueError, match="lr"):
        apply_overrides(RQVAEConfig(), ["lr=fast"])
