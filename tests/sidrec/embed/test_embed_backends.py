"""Encoders in one process: MiniLM via sentence-transformers and via hf agree; every
pooling ignores padding; configs and the registry reject what cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.embed import (
    BACKENDS,
    EmbedConfig,
    EncoderConfig,
    build_encoder,
    get_backend,
    hashed_bow_encoder,
    hf_encoder,
    minilm_l6_v2,
    packaged_minilm_path,
    vllm_encoder,
)
from sidrec.embed._pooling import POOLERS

TEXTS = [
    "short",
    "Title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce\nBrand: OPI\nCategory: Makeup > Nails",
    "Title: Shampoo\nBrand: Dove",
    "",
]


@pytest.fixture(scope="module")
def minilm():
    return build_encoder(minilm_l6_v2(batch_size=2))


def test_minilm_matches_sentence_transformers_directly(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(packaged_minilm_path()), device="cpu")
    expected = reference.encode(TEXTS, batch_size=2, convert_to_numpy=True)
    got = minilm.encode(TEXTS)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_hf_backend_reproduces_minilm(minilm):
    # Same weights through AutoModel + our mean pooling + L2 = the ST pipeline.
    hf = build_encoder(
        hf_encoder(str(packaged_minilm_path()), pooling="mean", max_length=256, batch_size=3)
    )
    np.testing.assert_allclose(hf.encode(TEXTS), minilm.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize(
    "model, pooling", [("bert", "mean"), ("bert", "cls"), ("gpt2", "last"), ("gpt2", "mean")]
)
def test_hf_vector_does_not_depend_on_batch_padding(tiny_models, model, pooling):
    enc = build_encoder(
        hf_encoder(str(tiny_models[model]), pooling=pooling, max_length=64, batch_size=8)
    )
    batched = enc.encode(TEXTS)
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    assert batched.shape == (4, 32)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # Different texts, different vectors: the pooling reads the tokens.
    assert np.abs(batched[1] - batched[2]).max() > 1e-3


def test_hf_dtype_and_max_length(tiny_models):
    path = str(tiny_models["gpt2"])
    full = build_encoder(hf_encoder(path, pooling="last", dtype="float32")).encode(TEXTS)
    bf16 = build_encoder(hf_encoder(path, pooling="last", dtype="bfloat16"))
    assert bf16.model.dtype == torch.bfloat16
    out = bf16.encode(TEXTS)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full, atol=0.05)  # bf16 keeps ~3 significant digits
    # Truncation: the last kept token differs from the full text's last token.
    cut = build_encoder(hf_encoder(path, pooling="last", max_length=3)).encode(TEXTS)
    assert np.abs(cut[1] - full[1]).max() > 1e-3


@pytest.mark.parametrize("name", sorted(POOLERS))
def test_poolers_read_only_real_tokens_left_or_right_padded(name):
    torch.manual_seed(0)
    real = torch.randn(1, 3, 4)
    pad = torch.full((1, 2, 4), 1e3)  # garbage in padded positions must not leak
    right = POOLERS[name](torch.cat([real, pad], 1), torch.tensor([[1, 1, 1, 0, 0]]))
    left = POOLERS[name](torch.cat([pad, real], 1), torch.tensor([[0, 0, 1, 1, 1]]))
    bare = POOLERS[name](real, torch.ones(1, 3, dtype=torch.int64))
    torch.testing.assert_close(right, bare)
    torch.testing.assert_close(left, bare)


def test_registry_names_and_errors():
    assert set(BACKENDS) == {"sentence-transformers", "hf", "vllm", "hashed-bow"}
    with pytest.raises(ValueError, match="unknown encoder backend 'onnx'"):
        get_backend("onnx")
    with pytest.raises(ValueError, match="only inside the Ray Data pipeline"):
        build_encoder(vllm_encoder("/models/e5"))


def test_config_validation_and_tags(tiny_models):
    with pytest.raises(ValueError, match="set `model`"):
        EncoderConfig(backend="hf")
    with pytest.raises(ValueError, match="pooling"):
        hf_encoder("m", pooling="max")
    with pytest.raises(ValueError, match="dtype"):
        hf_encoder("m", dtype="int8")
    with pytest.raises(ValueError, match="rows_per_call"):
        EmbedConfig(rows_per_call=0)
    with pytest.raises(ValueError, match="plain column name"):
        EmbedConfig(template="{0}")
    assert minilm_l6_v2().tag == "all-minilm-l6-v2"
    assert hf_encoder("/models/Qwen3-0.6B/", pooling="last").tag == "qwen3-0.6b-last-hf"
    assert vllm_encoder("intfloat/e5-mistral-7b-instruct").tag == "e5-mistral-7b-instruct-vllm"
    assert EmbedConfig(tag="mine").output_tag == "mine"
    # The actor's copy moves to the GPU only when the pipeline asks for GPUs.
    assert EmbedConfig(num_gpus=1).for_workers().device == "cuda"
    assert EmbedConfig().for_workers().device == "cpu"
    with pytest.raises(ValueError, match="0 = auto"):
        EmbedConfig(num_actors=-1)


def test_describe_reads_the_sentence_transformers_modules():
    described = get_backend("sentence-transformers").describe(minilm_l6_v2())
    assert described == {"pooling": "mean", "normalization": "l2"}


def test_hashed_bow_is_deterministic_normalized_and_keeps_word_overlap():
    encoder = build_encoder(hashed_bow_encoder(dim=256))
    texts = [
        "Title: Rugged Trail Boots. Category: Outdoors > Hiking",
        "Title: rugged TRAIL boots! Category: Outdoors > Hiking",  # same words
        "Title: Rugged Trail Shoes. Category: Outdoors > Hiking",  # most words
        "Title: Silk Scarf. Category: Beauty > Accessories",  # few words
        "",
        "ünïcode — only",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (6, 256) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, encoder.encode(texts))  # no state, no seed
    np.testing.assert_array_equal(vectors[2], encoder.encode(texts[2:3])[0])  # batch-free
    norms = np.linalg.norm(vectors, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 3, 5]], 1.0, rtol=1e-5)
    assert norms[4] == 0  # no words, no direction
    cos = vectors @ vectors[0]
    # 5 of 7 words shared vs 2 of 7 ("title", "category"): cos ~ 5/7 and ~ 2/6.5
    assert cos[1] == pytest.approx(1.0, abs=1e-5) and cos[2] > 0.6 > 0.45 > cos[3]
    assert encoder.encode(["x"] * 3).shape == (3, 256)
    assert hashed_bow_encoder(model="hashed-bow-32").tag == "hashed-bow-32"
    with pytest.raises(ValueError, match="hashed-bow-<dim>"):
        build_encoder(EncoderConfig(backend="hashed-bow", model="hashed-bow-x"))
