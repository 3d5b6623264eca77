"""LAMIA palette models, losses, tasks and quantization on real Beauty items:
the dual forward pass equals the paper's literal single-sequence form, the
losses match their formulas, both backbones learn, PCA + K-Means codes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from sidrec.data import DataError
from sidrec.tokenizers.lamia import (
    EncoderBackbone,
    fit_quantizer,
    inter_palette_hinge,
    intra_palette_hinge,
    item_attributes,
    lamia_loss,
    sample_tasks,
)
from sidrec.tokenizers.lamia.losses import position_similarity
from sidrec.tokenizers.lamia.quantize import position_ami
from sidrec.tokenizers.lamia.train import build_model

FIELDS = ("title", "brand", "categories")


def _helpers():
    path = Path(__file__).with_name("lamia_helpers.py")
    spec = importlib.util.spec_from_file_location("lamia_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def attrs(beauty_root):
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, 200)
    return item_attributes(items, FIELDS)


def _batch(model, attrs, rows, seed=0, drop=0.3):
    sample = sample_tasks(attrs, np.asarray(rows), drop, np.random.default_rng(seed))
    ids, valid = model.tokenize_content(sample.content)
    answers = model.tokenize_answers(sample.answers)
    return sample, (
        ids,
        valid,
        torch.as_tensor(sample.task_item),
        torch.as_tensor(sample.task_id),
        *answers,
    )


def test_tasks_reconstruct_and_predict(attrs):
    sample = sample_tasks(attrs, np.arange(50), drop_prob=1.0, rng=np.random.default_rng(0))
    assert len(sample.content) == 50
    # Every item with >= 2 attributes has exactly one prediction task.
    for b in range(50):
        mine = sample.reconstruct[sample.task_item == b]
        if len(mine) > 1:
            assert (~mine).sum() == 1
    first = int(np.flatnonzero(~sample.reconstruct)[0])
    label = {"title": "Title: ", "brand": "Brand: ", "categories": "Category: "}
    field = FIELDS[int(sample.task_id[first])]
    content = sample.content[int(sample.task_item[first])]
    assert label[field] not in content, "a prediction task's field is shown in the content"
    plain = sample_tasks(attrs, np.arange(50), drop_prob=0.0, rng=np.random.default_rng(0))
    assert plain.reconstruct.all()
    assert "Title: " in plain.content[0] and "Category: " in plain.content[0]


def test_missing_field_is_named(beauty_root):
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, 5)
    with pytest.raises(DataError, match="description"):
        item_attributes(items, ("title", "description"))


def test_hinges_match_their_formulas():
    torch.manual_seed(0)
    p = torch.randn(5, 3, 8)
    u = F.normalize(p, dim=-1)
    intra = np.mean(
        [
            max(0.0, float(u[i, a] @ u[i, b]) - 0.1)
            for i in range(5)
            for a in range(3)
            for b in range(a + 1, 3)
        ]
    )
    inter = np.mean(
        [
            max(0.0, float(u[i, k] @ u[j, k]) - 0.25)
            for k in range(3)
            for i in range(5)
            for j in range(i + 1, 5)
        ]
    )
    assert intra_palette_hinge(p, 0.1).item() == pytest.approx(intra, rel=1e-5)
    assert inter_palette_hinge(p, 0.25).item() == pytest.approx(inter, rel=1e-5)
    # Identical vectors pay 1 - margin; orthogonal ones nothing.
    same = torch.ones(2, 2, 4)
    assert intra_palette_hinge(same, 0.1).item() == pytest.approx(0.9)
    eye = torch.eye(4)[None].expand(3, 4, 4)
    assert intra_palette_hinge(eye, 0.1).item() == 0.0
    out = lamia_loss(torch.tensor(2.0), p, gamma=0.0, intra_margin=0.1, inter_margin=0.25)
    assert out["loss"].item() == 2.0, "gamma 0 is the w/o L_cl ablation"


def test_dual_pass_equals_the_literal_single_sequence_form(attrs):
    torch.manual_seed(0)
    model = _helpers().tiny_decoder_palette(num_palette=3, num_tasks=3).eval()
    _, batch = _batch(model, attrs, [0, 5, 9, 17])
    gen, palette = model(*batch)
    ref_gen, ref_palette = model.reference_loss(*batch)
    torch.testing.assert_close(palette[batch[2]], ref_palette, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gen, ref_gen, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(gen) and gen.item() > 0


def test_decoder_backbone_lora_trains_only_adapters_and_tokens(attrs):
    torch.manual_seed(0)
    model = _helpers().tiny_decoder_palette(num_palette=2, num_tasks=3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    assert all("lora_" in n or n in ("palette_tokens", "task_tokens") for n in trainable), trainable
    _, batch = _batch(model, attrs, list(range(16)))
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(20):
        gen, palette = model(*batch)
        loss = lamia_loss(gen, palette, 0.1, 0.1, 0.25)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    # A random 2-layer LM with its frozen random head learns slowly: ask for a clear drop.
    assert loss.item() < first - 0.3, (first, loss.item())
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)


def test_encoder_backbone_shapes_and_learning(attrs):
    torch.manual_seed(0)
    backbone = EncoderBackbone(
        frozen_layers=5,
        decoder_layers=1,
        decoder_dim=64,
        decoder_heads=2,
        decoder_ffn=128,
        dropout=0.0,
        max_content_tokens=48,
        max_answer_tokens=12,
    )
    from sidrec.tokenizers.lamia import LamiaConfig

    model = build_model(LamiaConfig(backbone=backbone, num_palette=3), attrs)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("layer.0." in n for n in frozen) and not any("layer.5." in n for n in frozen)
    sample, batch = _batch(model, attrs, list(range(12)))
    gen, palette = model(*batch)
    assert palette.shape == (12, 3, 384)
    # Content never sees the palette: the palette of an item does not depend on its batch.
    alone = model.palette(*model.tokenize_content(sample.content[:1]))
    torch.testing.assert_close(alone[0], palette[0], rtol=1e-4, atol=1e-4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = gen.item()
    for _ in range(12):
        gen, palette = model(*batch)
        optimizer.zero_grad()
        lamia_loss(gen, palette, 0.1, 0.1, 0.25)["loss"].backward()
        optimizer.step()
    assert gen.item() < first * 0.8


def test_centered_hinges_see_through_a_constant_offset_per_position():
    # Four positions = one item-specific vector plus a large orthogonal offset
    # per position: the raw hinges are met, the information is repeated.
    torch.manual_seed(0)
    item = 0.1 * torch.randn(16, 1, 32)
    offset = 10.0 * torch.eye(32)[:4][None]  # [1 x 4 x 32]
    p = item.expand(16, 4, 32) + offset
    raw = lamia_loss(torch.tensor(0.0), p, 1.0, 0.1, 0.25)
    centered = lamia_loss(torch.tensor(0.0), p, 1.0, 0.1, 0.25, centered=True)
    assert raw["intra"].item() == 0.0
    assert centered["intra"].item() == pytest.approx(0.9, abs=1e-4)  # cos 1 - α_intra
    # Centering subtracts the batch mean, so it is one term of the gradient graph.
    p = p.clone().requires_grad_(True)
    lamia_loss(torch.tensor(0.0), p, 1.0, 0.1, 0.25, centered=True)["loss"].backward()
    assert torch.allclose(p.grad.sum(0), torch.zeros(4, 32), atol=1e-5)


def test_position_similarity_sees_a_rotated_copy_that_cosines_miss():
    torch.manual_seed(0)
    independent = torch.randn(64, 3, 384)
    assert position_similarity(independent).item() < 0.05  # debiased: ~0 with d >> b
    rotation = torch.linalg.qr(torch.randn(384, 384))[0]
    copy = independent.clone()
    copy[:, 1] = copy[:, 0] @ rotation
    copy[:, 2] = 3.0 * copy[:, 0] + 5.0  # scaled and shifted: the same geometry
    assert intra_palette_hinge(copy[:, :2], 0.1).item() < 0.01  # item by item ~orthogonal
    assert position_similarity(copy).item() == pytest.approx(1.0, abs=1e-4)
    p = copy.clone().requires_grad_(True)
    out = lamia_loss(torch.tensor(0.0), p, 0.0, 0.1, 0.25, decorrelate=2.0)
    assert out["loss"].item() == pytest.approx(2.0 * out["cka"].item())
    out["loss"].backward()
    assert p.grad.abs().sum() > 0


def test_negative_loss_weights_are_refused_by_name():
    import dataclasses

    from sidrec.tokenizers.lamia import lamia_minilm_small

    for name in ("gamma", "decorrelate_weight"):
        cfg = dataclasses.replace(lamia_minilm_small(), **{name: -0.5})
        with pytest.raises(ValueError, match=name):
            cfg.validate(12101)


def test_position_ami_is_zero_for_independent_and_one_for_repeated_codes():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 64, size=(5000, 3))
    assert abs(position_ami(codes)) < 0.02
    codes[:, 1] = codes[:, 0]
    codes[:, 2] = (codes[:, 0] * 7 + 3) % 64  # a renaming is the same partition
    assert position_ami(codes) == pytest.approx(1.0)
    assert position_ami(codes[:, :1]) == 0.0


def test_quantizer_codes_each_position_independently():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 2, 16))
    labels = rng.integers(0, 8, size=(400, 2))
    palettes = centers[labels, [0, 1]] + 0.01 * rng.normal(size=(400, 2, 16))
    q = fit_quantizer(
        palettes.astype(np.float32), pca_dim=4, codebook_size=8, seed=0, backend="sklearn"
    )
    codes = q.codes(palettes)
    assert codes.shape == (400, 2) and q.components.shape == (2, 4, 16)
    for level in range(2):  # each position's clusters are recovered (up to renaming)
        pairs = set(zip(labels[:, level].tolist(), codes[:, level].tolist(), strict=True))
        assert len(pairs) == 8
    # Position 1 permuted across items leaves position 0's codes unchanged.
    shuffled = palettes.copy()
    shuffled[:, 1] = shuffled[rng.permutation(400), 1]
    assert np.array_equal(q.codes(shuffled)[:, 0], codes[:, 0])
    with pytest.raises(ValueError, match="pca_dim"):
        fit_quantizer(palettes, pca_dim=32, codebook_size=8)
