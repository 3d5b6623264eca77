"""Residual quantizer properties: codes in range, straight-through gradients,
k-means initialization, dead-code re-seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.tokenizers import ResidualQuantizer, kmeans


def _blobs(n=300, d=4, centres=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, d, generator=g) * 3
    return means[torch.arange(n) % centres] + 0.1 * torch.randn(n, d, generator=g)


def test_codes_in_range_and_decode_matches_the_quantized_output():
    q = ResidualQuantizer(levels=3, codebook_size=8, dim=4)
    z = _blobs()
    q.train()
    out = q(z)  # first training call initializes the codebooks
    assert bool(q.initialized)
    assert out.codes.shape == (300, 3)
    assert out.codes.min() >= 0 and out.codes.max() < 8
    torch.testing.assert_close(out.quantized, q.decode(out.codes))
    torch.testing.assert_close(out.code_vectors.sum(1), q.decode(out.codes))
    codes, residuals = q.encode(z)
    assert torch.equal(codes, out.codes) and residuals.shape == (300, 3, 4)


def test_straight_through_gradient_reaches_the_encoder_and_the_codebooks():
    q = ResidualQuantizer(levels=2, codebook_size=4, dim=3)
    q.init_codebooks(_blobs(d=3))
    z = _blobs(n=20, d=3, seed=1).requires_grad_()
    out = q(z)
    # STE: d(quantized)/dz is the identity.
    out.quantized.sum().backward(retain_graph=True)
    torch.testing.assert_close(z.grad, torch.ones_like(z))
    z.grad = None
    out.loss.backward(retain_graph=True)
    assert z.grad.abs().sum() > 0  # commitment term
    assert q.codebooks.grad.abs().sum() > 0  # codebook term
    q.codebooks.grad = None
    out.code_vectors.sum().backward()
    assert q.codebooks.grad.abs().sum() > 0  # the tag losses move the codewords too


def test_kmeans_initialization_puts_codewords_on_the_data():
    z = _blobs(centres=4)
    q = ResidualQuantizer(levels=1, codebook_size=4, dim=4)
    q.init_codebooks(z)
    # Four tight blobs, four codewords: one per blob, so every item is near its codeword.
    error = (z - q.decode(q.encode(z)[0])).pow(2).sum(1)
    assert error.max() < 0.5  # noise only; blobs are ~10 apart
    assert len(torch.unique(q.encode(z)[0])) == 4


def test_dead_codes_are_reseeded_onto_crowded_residuals():
    z = _blobs(centres=6)
    q = ResidualQuantizer(levels=1, codebook_size=6, dim=4)
    q.init_codebooks(z)
    q.codebooks.data[0, 2] = 1000.0  # nobody's nearest: dead
    q.codebooks.data[0, 5] = 1000.0
    before = torch.bincount(q.encode(z)[0][:, 0], minlength=6)
    assert before[2] == 0 and before[5] == 0
    moved = q.reseed_dead_codes(z, torch.Generator().manual_seed(0))
    assert moved == [2]
    after = torch.bincount(q.encode(z)[0][:, 0], minlength=6)
    assert (after > 0).all()


def test_codebook_larger_than_the_data_is_a_clear_error():
    q = ResidualQuantizer(levels=1, codebook_size=64, dim=4)
    with pytest.raises(ValueError, match="codebook_size"):
        q.init_codebooks(_blobs(n=10))


def test_kmeans_backend_dispatch():
    x = _blobs().numpy()
    centroids = kmeans(x, 6, backend="sklearn", seed=0)
    assert centroids.shape == (6, 4) and centroids.dtype == np.float32
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 6, backend="nope")
    with pytest.raises(ValueError, match="codebook_size"):
        kmeans(x[:3], 6)
