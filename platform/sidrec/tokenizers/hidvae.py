"""HiD-VAE tokenizer (Fang et al., "HiD-VAE: Interpretable Generative
Recommendation via Hierarchical and Disentangled Semantic IDs", arXiv
2508.04618, §4.2.4–4.2.6, Eq. 5–8, App. C.2).

An RQ-VAE (rqvae.py) whose codes are supervised by the items' hierarchical
tags, plus a loss against ID collisions:

- tag alignment (Eq. 5): a per-level projector maps the concatenated code
  vectors [e_0; ...; e_l] into the item-embedding space, where InfoNCE
  (τ = 0.07) pulls it to the item's level-l tag embedding and away from the
  level's other tags;
- tag prediction (Eq. 6): a per-level classifier on the same concatenation,
  its hidden width growing with depth (finer levels have more classes),
  trained with focal loss (γ = 2);
- uniqueness (Eq. 7): a hinge max(0, cos(z_i, z_j) - m), m = 0.9, on the
  encoder outputs of distinct items of the batch whose full SIDs collide;
- total (Eq. 8): recon + commitment(β 0.25, in the quantizer) +
  β_sup (align + pred) + β_unique · unique; the tag losses are averaged over
  the supervised levels.

Tag embeddings: the paper encodes tag text with the item encoder; here each
tag is the unit-norm centroid of its items' embeddings (`tags.tag_centroids`),
which lives in the same space and needs no text encoder in this stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from sidrec.data import DataError
from sidrec.tokenizers._mlp import mlp
from sidrec.tokenizers.losses import focal_loss, info_nce, uniqueness_loss
from sidrec.tokenizers.rqvae import RQVAE, _validate_common

__all__ = [
    "HiDVAEConfig",
    "HiDVAE",
    "hidvae_beauty",
    "hidvae_beauty_tuned",
    "hidvae_beauty_no_uniqueness",
]


@dataclass(frozen=True)
class HiDVAEConfig:
    """Model, loss weights and optimization of one HiD-VAE run (`hidvae_beauty()`)."""

    levels: int = 3  # L; App. C.2
    codebook_size: int = 256  # K; App. C.2
    latent_dim: int = 32  # TIGER's latent width (the paper builds on TIGER's RQ-VAE)
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    commitment_weight: float = 0.25  # β_commit, Eq. 8
    dropout: float = 0.0
    tag_levels: int | None = None  # levels with tag supervision; None = all L
    align_weight: float = 1.0  # β_sup on the InfoNCE alignment, Eq. 8
    pred_weight: float = 1.0  # β_sup on the focal tag prediction, Eq. 8
    unique_weight: float = 2.0  # β_unique, Eq. 8; 0 = "HiD-VAE w/o uniqueness"
    temperature: float = 0.07  # τ of Eq. 5
    focal_gamma: float = 2.0  # γ of Eq. 6; 0 = plain cross-entropy
    unique_margin: float = 0.9  # m of Eq. 7: colliding pairs below this cosine cost nothing
    max_unique_pairs: int = 65536  # cap per batch; a larger set is subsampled uniformly
    # Epoch order: False = a plain shuffle (the paper); True = items that shared
    # a full SID at the last evaluation go into one batch, so Eq. 7 sees every
    # colliding pair every epoch instead of ~batch/N of them.
    collision_batches: bool = False
    projector_hidden: int = 256  # alignment projector width
    classifier_hidden: int = 256  # level l's classifier is (l+1) times this wide
    optimizer: str = "adamw"  # App. C.2
    lr: float = 3e-4  # App. C.2
    weight_decay: float = 0.01
    batch_size: int = 1024
    epochs: int = 200
    # "constant", or "cosine": lr decays to 0 over the epochs, so the last
    # epochs' codes settle instead of jumping by ±0.5% collisions per epoch.
    lr_schedule: str = "constant"
    reseed_dead_codes: bool = True
    kmeans_iters: int = 25
    kmeans_backend: str = "auto"
    seed: int = 0

    learner = "hidvae"

    @property
    def supervised_levels(self) -> int:
        return self.levels if self.tag_levels is None else self.tag_levels

    def validate(self, num_items: int) -> None:
        _validate_common(self, num_items)
        checks = [
            (1 <= self.supervised_levels <= self.levels, "tag_levels", "must be in 1..levels"),
            (self.temperature > 0, "temperature", "must be > 0"),
            (self.focal_gamma >= 0, "focal_gamma", "must be >= 0"),
            (-1 <= self.unique_margin <= 1, "unique_margin", "is a cosine: must be in [-1, 1]"),
            (self.max_unique_pairs >= 1, "max_unique_pairs", "must be >= 1"),
        ]
        for name in ("align_weight", "pred_weight", "unique_weight"):
            checks.append((getattr(self, name) >= 0, name, "must be >= 0"))
        for ok, name, why in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} {why}")

    def build(self, input_dim: int, tag_sizes: list[int] | None = None) -> HiDVAE:
        if not tag_sizes:
            raise DataError(
                "HiD-VAE needs item tags (catalog categories or a tags file)", field="categories"
            )
        if len(tag_sizes) < self.supervised_levels:
            raise DataError(
                f"tags have {len(tag_sizes)} levels, tag_levels={self.supervised_levels}",
                field="categories",
            )
        return HiDVAE(self, input_dim, list(tag_sizes[: self.supervised_levels]))


def hidvae_beauty() -> HiDVAEConfig:
    """HiD-VAE App. C.2 as quoted in issue 4: L 3, K 256, β_commit 0.25,
    β_sup 1.0, β_unique 2.0, τ 0.07, γ 2, m 0.9, AdamW lr 3e-4; encoder sizes
    from TIGER §4.1. Epochs are this CPU's budget (docs/RESULTS_tokenizers.md)."""
    return HiDVAEConfig(
        levels=3,
        codebook_size=256,
        latent_dim=32,
        hidden_dims=(512, 256, 128),
        commitment_weight=0.25,
        dropout=0.0,
        tag_levels=None,
        align_weight=1.0,
        pred_weight=1.0,
        unique_weight=2.0,
        temperature=0.07,
        focal_gamma=2.0,
        unique_margin=0.9,
        max_unique_pairs=65536,
        collision_batches=False,
        projector_hidden=256,
        classifier_hidden=256,
        optimizer="adamw",
        lr=3e-4,
        weight_decay=0.01,
        batch_size=1024,
        epochs=200,
        lr_schedule="constant",
        reseed_dead_codes=True,
        kmeans_iters=25,
        kmeans_backend="auto",
        seed=0,
    )


def hidvae_beauty_tuned() -> HiDVAEConfig:
    """hidvae_beauty() with what took Beauty's collision rate under the paper's
    2.1% on a CPU budget (docs/RESULTS_tokenizers.md): colliding items
    batched together (`collision_batches`), β_unique 8 instead of 2, and a
    cosine learning-rate decay. The losses are the paper's; the job's default."""
    return replace(hidvae_beauty(), collision_batches=True, unique_weight=8.0, lr_schedule="cosine")


def hidvae_beauty_no_uniqueness() -> HiDVAEConfig:
    """The ablation "HiD-VAE w/o uniqueness loss" (paper Table 3): β_unique = 0."""
    return replace(hidvae_beauty(), unique_weight=0.0)


class HiDVAE(nn.Module):
    """x: [b x input_dim], tags: [b x Lt] (-1 = none) → losses; codes [b x L]."""

    def __init__(self, cfg: HiDVAEConfig, input_dim: int, tag_sizes: list[int]):
        super().__init__()
        self.cfg = cfg
        self.input_dim = input_dim
        self.tag_sizes = list(tag_sizes)
        self.rq = RQVAE(
            input_dim=input_dim,
            hidden_dims=cfg.hidden_dims,
            latent_dim=cfg.latent_dim,
            levels=cfg.levels,
            codebook_size=cfg.codebook_size,
            commitment_weight=cfg.commitment_weight,
            dropout=cfg.dropout,
            kmeans_iters=cfg.kmeans_iters,
            kmeans_backend=cfg.kmeans_backend,
        )
        d = cfg.latent_dim
        # Level l sees the codes of levels 0..l: the path so far, not one code.
        self.projectors = nn.ModuleList(
            mlp((level + 1) * d, (cfg.projector_hidden,), input_dim)
            for level in range(len(tag_sizes))
        )
        self.classifiers = nn.ModuleList(
            mlp((level + 1) * d, (cfg.classifier_hidden * (level + 1),), size)
            for level, size in enumerate(tag_sizes)
        )
        # Tag embeddings [T_l x input_dim], set from the data (set_tag_embeddings).
        for level, size in enumerate(tag_sizes):
            self.register_buffer(f"tag_embeddings_{level}", torch.zeros(size, input_dim))

    def tag_embeddings(self, level: int) -> Tensor:
        return getattr(self, f"tag_embeddings_{level}")

    def set_tag_embeddings(self, tables: list[np.ndarray]) -> None:
        for level, table in enumerate(tables[: len(self.tag_sizes)]):
            self.tag_embeddings(level).copy_(torch.as_tensor(table))

    def _heads_input(self, code_vectors: Tensor, level: int) -> Tensor:
        """[b x (l+1)·d]: code vectors of levels 0..l side by side."""
        return code_vectors[:, : level + 1].flatten(1)

    def forward(self, x: Tensor, tags: Tensor | None = None) -> dict[str, Tensor]:
        """Eq. 8 on one batch. tags: [b x Lt] class ids, -1 where an item has none."""
        cfg = self.cfg
        out, z, q = self.rq.autoencode(x)
        align, pred = [], []
        for level in range(len(self.tag_sizes)):
            target = tags[:, level]
            has_tag = target >= 0
            h = self._heads_input(q.code_vectors, level)
            align.append(
                info_nce(
                    self.projectors[level](h),
                    self.tag_embeddings(level),
                    target,
                    cfg.temperature,
                    has_tag,
                )
            )
            pred.append(focal_loss(self.classifiers[level](h), target, cfg.focal_gamma, has_tag))
        align_loss = torch.stack(align).mean()
        pred_loss = torch.stack(pred).mean()
        if cfg.unique_weight > 0:
            unique, _ = uniqueness_loss(z, q.codes, cfg.unique_margin, cfg.max_unique_pairs)
        else:  # the ablation: "HiD-VAE w/o uniqueness loss"
            unique = z.new_zeros(())
        out["loss"] = (
            out["loss"]
            + cfg.align_weight * align_loss
            + cfg.pred_weight * pred_loss
            + cfg.unique_weight * unique
        )
        out.update(
            align_loss=align_loss,
            pred_loss=pred_loss,
            unique_loss=unique,
            colliding_pairs=torch.tensor(float(_colliding_pair_count(q.codes))),
        )
        return out

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        return self.rq.codes(x)

    @torch.no_grad()
    def tokenize(self, x: Tensor) -> dict[str, Tensor]:
        """RQ-VAE's evaluation pass plus `tags` [b x Lt]: the classes the
        classifiers read off the hard codes."""
        out = self.rq.tokenize(x)
        out["tags"] = torch.stack(
            [
                self.classifiers[level](self._heads_input(out["code_vectors"], level)).argmax(-1)
                for level in range(len(self.tag_sizes))
            ],
            1,
        )
        return out

    @property
    def quantizer(self):
        return self.rq.quantizer

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, seed: int = 0) -> None:
        self.rq.init_codebooks(x, seed)

    @torch.no_grad()
    def reseed_dead_codes(self, x: Tensor, generator: torch.Generator | None = None) -> list[int]:
        return self.rq.reseed_dead_codes(x, generator)


def _colliding_pair_count(codes: Tensor) -> int:
    """Σ over SIDs of g(g-1)/2 for the g batch items sharing it (counted, not listed)."""
    _, counts = torch.unique(codes, dim=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())
