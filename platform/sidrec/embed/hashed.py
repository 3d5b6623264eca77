"""A hashed bag-of-words encoder: no model, ~1M texts/s/core, for pipeline-scale runs.

    encoder = build_encoder(hashed_bow_encoder(dim=64))
    vectors = encoder.encode(texts)      # [n x 64] float32, L2-normalized

Feature hashing (Weinberger et al., ICML 2009, §2): each lower-cased
alphanumeric token adds a signed one-hot in bucket h(token) mod dim, the sign
from another hash bit, so the expected inner product of two vectors is their
bag-of-words overlap. It is a random projection of the BoW vector with no
weights to load, which is the point: it measures what the Ray Data pipeline
itself costs in time and memory at 1M-10M rows (bench/scale.py), where a
transformer would only measure the transformer. Texts sharing words
(a synthetic catalog's topic words, a category path) land near each other,
so SIDs learnt from these vectors still carry the catalog's structure.

Everything is vectorized with Arrow kernels and numpy: the tokens of a batch
are padded to 16 bytes (longer ones cut: "handmade-leather" and
"handmade-leathers" collide, harmless here) so that their bytes can be
read as two uint64 per token and mixed into one 64-bit hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sidrec.embed.config import EncoderConfig

__all__ = ["HashedBowEncoder", "hashed_bow_dim"]

PREFIX = "hashed-bow-"
_WIDTH = 16  # bytes of a token that reach the hash


def hashed_bow_dim(cfg: EncoderConfig) -> int:
    """The dimension named by the model string, e.g. "hashed-bow-64" -> 64."""
    suffix = cfg.model.removeprefix(PREFIX)
    if not cfg.model.startswith(PREFIX) or not suffix.isdigit() or int(suffix) < 1:
        raise ValueError(
            f"backend 'hashed-bow': model must be '{PREFIX}<dim>' (e.g. {PREFIX}64), "
            f"got {cfg.model!r}; build it with hashed_bow_encoder(dim)"
        )
    return int(suffix)


class HashedBowEncoder:
    """Signed feature hashing of lower-cased alphanumeric tokens, then L2 norm."""

    def __init__(self, cfg: EncoderConfig):
        self.cfg = cfg
        self.dim = hashed_bow_dim(cfg)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        lower = pc.utf8_lower(pa.array(list(texts), pa.string()))
        words = pc.split_pattern_regex(lower, "[^a-z0-9]+")
        lengths = pc.list_value_length(words).fill_null(0).to_numpy(zero_copy_only=False)
        rows = np.repeat(np.arange(n), lengths)
        tokens = pc.list_flatten(words)
        keep = pc.greater(pc.utf8_length(tokens), 0)
        tokens, rows = pc.filter(tokens, keep), rows[keep.to_numpy(zero_copy_only=False)]
        out = np.zeros((n, self.dim), dtype=np.float32)
        if len(tokens):
            h = _hash16(tokens)
            bucket = ((h >> np.uint64(1)) % np.uint64(self.dim)).astype(np.int64)
            sign = 1.0 - 2.0 * (h & np.uint64(1)).astype(np.float32)
            flat = np.bincount(rows * self.dim + bucket, weights=sign, minlength=n * self.dim)
            out = flat.astype(np.float32).reshape(n, self.dim)
        if self.cfg.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out


def _hash16(tokens: pa.Array) -> np.ndarray:
    """[n] uint64 hash of each ASCII token's first 16 bytes (stable across runs and hosts)."""
    fixed = pc.utf8_rpad(pc.utf8_slice_codeunits(tokens, 0, _WIDTH), _WIDTH, " ")
    # Tokens are ASCII (the split drops everything else), so 16 code units = 16 bytes
    # and the values buffer is n records of exactly 16 bytes.
    start = fixed.offset
    offsets = np.frombuffer(fixed.buffers()[1], dtype=np.int32)[start : start + len(fixed) + 1]
    data = np.frombuffer(fixed.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    words = data.view(np.uint64).reshape(-1, 2)
    with np.errstate(over="ignore"):
        h = words[:, 0] * np.uint64(0x9E3779B97F4A7C15)
        h ^= words[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h
