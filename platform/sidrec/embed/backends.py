"""Encoder backends: one small Protocol, two in-process encoders, one registry.

    encoder = build_encoder(minilm_l6_v2())
    vectors = encoder.encode(["Title: OPI Nail Lacquer ...", ...])   # [n x 384] float32

`BACKENDS` is the only place a backend name is looked up. An in-process
backend (`build` set) runs inside the Ray actor pool, one model per actor, and
also without Ray (tests, notebooks, LAMIA's item-text encoder). vLLM brings
its own Ray Data stage (ray.data.llm) instead, so it has no `build` and
declares what it needs; `sidrec.embed.ray_embed` fails fast when the cluster
lacks it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sidrec.embed.config import (
    EncoderConfig,
    hashed_bow_encoder,
    hf_encoder,
    sentence_transformers_encoder,
    vllm_encoder,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "Encoder",
    "HFEncoder",
    "SentenceTransformerEncoder",
    "build_encoder",
    "get_backend",
]


class Encoder(Protocol):
    """Texts in, one float32 vector per text out."""

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts: n strings -> [n x dim] float32, rows in input order."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model: its own tokenizer, pooling and normalization modules."""

    def __init__(self, cfg: EncoderConfig):
        import torch
        from sentence_transformers import SentenceTransformer

        self.cfg = cfg
        self.model = SentenceTransformer(
            cfg.model, device=cfg.device, model_kwargs={"dtype": getattr(torch, cfg.dtype)}
        )
        self.model.max_seq_length = cfg.max_length
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dimension())
        # MiniLM ends in a Normalize module already; normalizing twice is a no-op
        # in exact arithmetic but not in float32, and the benchmark compares to 1e-5.
        self._normalize = cfg.normalize and not _has_normalize_module(self.model)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # encode() sorts by length before batching (less padding) and restores order.
        out = self.model.encode(
            list(texts),
            batch_size=self.cfg.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self._normalize,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


class HFEncoder:
    """Any transformers AutoModel with mean / CLS / last-token pooling (sidrec.embed._pooling)."""

    def __init__(self, cfg: EncoderConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from sidrec.embed._pooling import POOLERS

        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        # Right padding keeps real tokens at positions 0..len-1, so a causal model
        # gives a text the same states alone or padded in a batch.
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            # Decoder-only LLMs ship without a pad token; padded positions are masked anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # An item with no text at all renders as "" (sidrec.embed.text). BERT-style
        # tokenizers still give [CLS] [SEP]; byte-level BPEs give zero tokens, which
        # no pooling can read, so such a text is embedded as the end-of-text token.
        no_tokens = len(self.tokenizer("")["input_ids"]) == 0
        self._empty_text = (
            (self.tokenizer.eos_token or self.tokenizer.unk_token) if no_tokens else ""
        )
        self.model = AutoModel.from_pretrained(cfg.model, dtype=getattr(torch, cfg.dtype))
        self.model.to(cfg.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._pool = POOLERS[cfg.pooling]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = [t if t else self._empty_text for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, as SentenceTransformer.encode does: batches of similar
        # length pad little. Characters are a cheap proxy for tokens.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.cfg.batch_size):
                rows = order[start : start + self.cfg.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.cfg.max_length,
                    return_tensors="pt",
                ).to(self.cfg.device)
                hidden = self.model(**batch).last_hidden_state  # [b x s x d]
                pooled = self._pool(hidden, batch["attention_mask"]).float()
                if self.cfg.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out


@dataclass(frozen=True)
class Backend:
    # Builder of this backend's EncoderConfig (sidrec.embed.config), for jobs and YAML.
    config: Callable[..., EncoderConfig]
    # Builds the in-process encoder an actor holds; None when the backend
    # brings its own Ray Data stage (vLLM through ray.data.llm).
    build: Callable[[EncoderConfig], Encoder] | None
    # Pooling and normalization as the manifest records them.
    describe: Callable[[EncoderConfig], dict]
    # A module that must be importable ("vllm"), checked before Ray work starts.
    requires_module: str | None = None
    # True where the backend cannot run without GPUs (vLLM has no CPU wheel).
    requires_gpu: bool = False


def _describe_sentence_transformers(cfg: EncoderConfig) -> dict:
    folder = Path(cfg.model)
    pooling, normalization = "model default", "l2" if cfg.normalize else "model default"
    if (folder / "modules.json").is_file():  # a local model: read its own modules
        modules = json.loads((folder / "modules.json").read_text())
        for module in modules:
            if module["type"].endswith("Pooling"):
                pool_cfg = json.loads((folder / module["path"] / "config.json").read_text())
                pooling = ",".join(
                    k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                    for k, v in pool_cfg.items()
                    if k.startswith("pooling_mode_") and v is True
                )
            if module["type"].endswith("Normalize"):
                normalization = "l2"
        if not cfg.normalize and normalization != "l2":
            normalization = "none"
    return {"pooling": pooling, "normalization": normalization}


def _describe_hf(cfg: EncoderConfig) -> dict:
    return {"pooling": cfg.pooling, "normalization": "l2" if cfg.normalize else "none"}


def _describe_hashed(cfg: EncoderConfig) -> dict:
    return {
        "pooling": "sum of signed hashed words",
        "normalization": "l2" if cfg.normalize else "none",
    }


def _build_hashed(cfg: EncoderConfig) -> Encoder:
    from sidrec.embed.hashed import HashedBowEncoder

    return HashedBowEncoder(cfg)


def _describe_vllm(cfg: EncoderConfig) -> dict:
    return {
        "pooling": "model default (vLLM pooler)",
        "normalization": "model default (vLLM pooler)",
    }


BACKENDS: dict[str, Backend] = {
    "sentence-transformers": Backend(
        config=sentence_transformers_encoder,
        build=SentenceTransformerEncoder,
        describe=_describe_sentence_transformers,
    ),
    "hf": Backend(config=hf_encoder, build=HFEncoder, describe=_describe_hf),
    "vllm": Backend(
        config=vllm_encoder,
        build=None,
        describe=_describe_vllm,
        requires_module="vllm",
        requires_gpu=True,
    ),
    "hashed-bow": Backend(
        config=hashed_bow_encoder, build=_build_hashed, describe=_describe_hashed
    ),
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown encoder backend {name!r}; choose one of {sorted(BACKENDS)}"
        ) from None


def build_encoder(cfg: EncoderConfig) -> Encoder:
    """The in-process encoder for `cfg` (not vLLM, which only runs as a Ray Data stage)."""
    backend = get_backend(cfg.backend)
    if backend.build is None:
        raise ValueError(
            f"backend {cfg.backend!r} runs only inside the Ray Data pipeline "
            "(sidrec.embed.ensure_embedded); use 'hf' for an in-process encoder"
        )
    return backend.build(cfg)


def _has_normalize_module(model) -> bool:
    from sentence_transformers.models import Normalize

    return any(isinstance(module, Normalize) for module in model)
