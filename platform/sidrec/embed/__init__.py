"""Stage 2, embed: every catalog item -> one vector, with Ray Data (docs/ARCHITECTURE.md).

    from sidrec.embed import EmbedConfig, ensure_embedded, hf_encoder, load_embeddings
    result = ensure_embedded("artifacts/beauty", EmbedConfig(), dataset="beauty")
    vectors = load_embeddings("artifacts/beauty", result.tag)          # [N x 384] float32

    cfg = EmbedConfig(encoder=hf_encoder("/models/qwen3-0.6b", pooling="last", dtype="bfloat16"),
                      num_gpus=1, num_actors=4)

Pieces: `config` (typed configs and builders), `text` (templates, title
fallback), `backends` (the Encoder protocol and the backend registry),
`resources` (size the actor pool, fail fast when the cluster cannot run a config), `stage` (no-op
check, manifest, atomic write, MLflow) and `ray_embed` (the Ray Data pipeline;
the only module here that imports Ray).
"""

from sidrec.embed.backends import (
    BACKENDS,
    Backend,
    Encoder,
    HFEncoder,
    SentenceTransformerEncoder,
    build_encoder,
    get_backend,
)
from sidrec.embed.config import (
    DTYPES,
    POOLINGS,
    EmbedConfig,
    EncoderConfig,
    hashed_bow_encoder,
    hf_encoder,
    minilm_l6_v2,
    packaged_minilm_path,
    sentence_transformers_encoder,
    vllm_encoder,
)
from sidrec.embed.resources import ResourceError, check_resources, plan_resources
from sidrec.embed.stage import (
    EmbedResult,
    embeddings_path,
    ensure_embedded,
    load_embeddings,
    manifest_path,
)
from sidrec.embed.text import TextSource, TextTemplate

__all__ = [
    "BACKENDS",
    "DTYPES",
    "POOLINGS",
    "Backend",
    "EmbedConfig",
    "EmbedResult",
    "Encoder",
    "EncoderConfig",
    "HFEncoder",
    "ResourceError",
    "SentenceTransformerEncoder",
    "TextSource",
    "TextTemplate",
    "build_encoder",
    "check_resources",
    "embeddings_path",
    "ensure_embedded",
    "get_backend",
    "hashed_bow_encoder",
    "hf_encoder",
    "load_embeddings",
    "manifest_path",
    "minilm_l6_v2",
    "packaged_minilm_path",
    "plan_resources",
    "sentence_transformers_encoder",
    "vllm_encoder",
]
