"""Semantic-ID tokenizers (docs/ARCHITECTURE.md, stage 4): RQ-VAE (TIGER), RQ-KMeans and
HiD-VAE over one residual quantizer, and LAMIA's item palettes
(`sidrec.tokenizers.lamia`), trained through sidrec.distributed.

    from sidrec.tokenizers import TokenizeRequest, hidvae_beauty, run_tokenizer
    result = run_tokenizer(hidvae_beauty(), TokenizeRequest(dataset="beauty", artifact_root=root))
    result.sids_path  # sids/<run>.parquet, read with sidrec.data.sids.read_sid_table

    # or a loop on its own, in-process or on Ray Train workers:
    fit(train_loop, {"tokenizer": cfg, "embeddings": path, "tags": items}, RunSpec(...))
"""

from sidrec.tokenizers.hidvae import (
    HiDVAE,
    HiDVAEConfig,
    hidvae_beauty,
    hidvae_beauty_no_uniqueness,
    hidvae_beauty_tuned,
)
from sidrec.tokenizers.kmeans import kmeans
from sidrec.tokenizers.lamia import (
    LamiaConfig,
    lamia_minilm,
    lamia_minilm_small,
    lamia_opt,
    run_lamia,
)
from sidrec.tokenizers.losses import (
    colliding_pairs,
    focal_loss,
    info_nce,
    uniqueness_loss,
    vq_loss,
)
from sidrec.tokenizers.pipeline import (
    TokenizeRequest,
    TokenizeResult,
    apply_overrides,
    find_embeddings,
    load_tokenizer,
    registered_name,
    run_tokenizer,
)
from sidrec.tokenizers.quantizer import QuantizerOutput, ResidualQuantizer
from sidrec.tokenizers.rqkmeans import RQKMeansConfig, rqkmeans_default
from sidrec.tokenizers.rqvae import RQVAE, RQVAEConfig, rqvae_tiger
from sidrec.tokenizers.tags import TagSet, majority_tags, tags_from_paths
from sidrec.tokenizers.train import evaluate_tokenizer, load_tags, rqkmeans_loop, train_loop

__all__ = [
    "HiDVAE",
    "HiDVAEConfig",
    "LamiaConfig",
    "QuantizerOutput",
    "RQKMeansConfig",
    "RQVAE",
    "RQVAEConfig",
    "ResidualQuantizer",
    "TagSet",
    "TokenizeRequest",
    "TokenizeResult",
    "apply_overrides",
    "find_embeddings",
    "load_tokenizer",
    "registered_name",
    "run_tokenizer",
    "colliding_pairs",
    "evaluate_tokenizer",
    "focal_loss",
    "hidvae_beauty",
    "hidvae_beauty_no_uniqueness",
    "hidvae_beauty_tuned",
    "info_nce",
    "kmeans",
    "lamia_minilm",
    "lamia_minilm_small",
    "lamia_opt",
    "load_tags",
    "majority_tags",
    "rqkmeans_default",
    "rqkmeans_loop",
    "rqvae_tiger",
    "run_lamia",
    "tags_from_paths",
    "train_loop",
    "uniqueness_loss",
    "vq_loss",
]
