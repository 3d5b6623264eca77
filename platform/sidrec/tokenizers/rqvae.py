"""RQ-VAE, the TIGER tokenizer (Rajput et al., "Recommender Systems with
Generative Retrieval", NeurIPS 2023, §3.1 and §4.1).

An MLP encoder maps an item embedding x to z, a residual quantizer turns z
into L codes, an MLP decoder rebuilds x from the quantized ẑ. Loss:
||x - D(ẑ)||² (summed over features, mean over items) + the quantizer's
codebook and β-weighted commitment terms. `rqvae_tiger()` writes out TIGER's
published sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sidrec.tokenizers._mlp import mlp
from sidrec.tokenizers.quantizer import ResidualQuantizer

__all__ = ["RQVAEConfig", "RQVAE", "rqvae_tiger"]


@dataclass(frozen=True)
class RQVAEConfig:
    """Model and optimization of one RQ-VAE run; `rqvae_tiger()` gives the values."""

    levels: int = 3  # L codes per item; TIGER uses 3 (+1 disambiguation code)
    codebook_size: int = 256  # K codewords per level; K^L >> catalog size
    latent_dim: int = 32  # width of z, the space the codebooks live in
    hidden_dims: tuple[int, ...] = (512, 256, 128)  # encoder widths; decoder mirrors them
    commitment_weight: float = 0.25  # β of the commitment term
    dropout: float = 0.0
    optimizer: str = "adamw"  # "adamw" | "adagrad"
    lr: float = 3e-4
    weight_decay: float = 0.0
    batch_size: int = 1024  # items per step over all workers; >= N is full-batch
    epochs: int = 200
    # "constant", or "cosine": lr decays to 0 over the epochs, so the last
    # epochs' codes settle instead of jumping by ±0.5% collisions per epoch.
    lr_schedule: str = "constant"
    reseed_dead_codes: bool = True  # move unused codewords at each epoch's end
    kmeans_iters: int = 25  # Lloyd iterations of the codebook initialization
    kmeans_backend: str = "auto"  # faiss when installed, else sklearn
    seed: int = 0

    learner = "rqvae"

    def validate(self, num_items: int) -> None:
        _validate_common(self, num_items)

    def build(self, input_dim: int, tag_sizes: list[int] | None = None) -> RQVAE:
        return RQVAE(
            input_dim=input_dim,
            hidden_dims=self.hidden_dims,
            latent_dim=self.latent_dim,
            levels=self.levels,
            codebook_size=self.codebook_size,
            commitment_weight=self.commitment_weight,
            dropout=self.dropout,
            kmeans_iters=self.kmeans_iters,
            kmeans_backend=self.kmeans_backend,
        )


def _validate_common(cfg: Any, num_items: int) -> None:
    """Checks every gradient-trained tokenizer config shares; errors name the field."""
    checks = [
        (cfg.levels >= 1, "levels", "must be >= 1"),
        (cfg.codebook_size >= 2, "codebook_size", "must be >= 2"),
        (cfg.latent_dim >= 1, "latent_dim", "must be >= 1"),
        (cfg.batch_size >= 1, "batch_size", "must be >= 1"),
        (cfg.epochs >= 1, "epochs", "must be >= 1"),
        (cfg.lr > 0, "lr", "must be > 0"),
        (cfg.commitment_weight >= 0, "commitment_weight", "must be >= 0"),
        (cfg.optimizer in ("adagrad", "adamw"), "optimizer", "must be adagrad or adamw"),
        (cfg.lr_schedule in ("constant", "cosine"), "lr_schedule", "must be constant or cosine"),
    ]
    for ok, name, why in checks:
        if not ok:
            raise ValueError(f"{name}={getattr(cfg, name)!r} {why}")
    if cfg.codebook_size > num_items:
        raise ValueError(
            f"codebook_size={cfg.codebook_size} is larger than the catalog "
            f"({num_items} items): codewords could never all be used; lower codebook_size"
        )


def rqvae_tiger() -> RQVAEConfig:
    """TIGER §4.1: encoder 512-256-128 (ReLU) → 32-d latent, 3 levels × 256 codes,
    β = 0.25, k-means init on the first batch, batch 1024.

    Two departures, both measured (docs/RESULTS_tokenizers.md): TIGER's
    Adagrad at lr 0.4 diverged on MiniLM Beauty embeddings (reconstruction
    loss 1e18 within two epochs), so this uses HiD-VAE's AdamW 3e-4, which also
    makes the RQ-VAE vs HiD-VAE comparison about the losses alone; and TIGER
    trains 20k epochs on a GPU, 200 is the default here."""
    return RQVAEConfig(
        levels=3,
        codebook_size=256,
        latent_dim=32,
        hidden_dims=(512, 256, 128),
        commitment_weight=0.25,
        dropout=0.0,
        optimizer="adamw",  # TIGER: Adagrad, lr 0.4 (diverged here)
        lr=3e-4,
        weight_decay=0.0,
        batch_size=1024,
        epochs=200,
        lr_schedule="constant",
        reseed_dead_codes=True,
        kmeans_iters=25,
        kmeans_backend="auto",
        seed=0,
    )


class RQVAE(nn.Module):
    """x: [b x input_dim] → codes [b x L]; forward returns the training losses."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        levels: int,
        codebook_size: int,
        commitment_weight: float,
        dropout: float = 0.0,
        kmeans_iters: int = 25,
        kmeans_backend: str = "auto",
    ):
        super().__init__()
        self.input_dim = input_dim
        self.encoder = mlp(input_dim, hidden_dims, latent_dim, dropout)
        self.decoder = mlp(latent_dim, tuple(reversed(hidden_dims)), input_dim, dropout)
        self.quantizer = ResidualQuantizer(
            levels, codebook_size, latent_dim, commitment_weight, kmeans_iters, kmeans_backend
        )

    def forward(self, x: Tensor, tags: Tensor | None = None) -> dict[str, Tensor]:
        """Losses of one batch: `loss` (what to minimize), `recon_loss`, `vq_loss`,
        and `codes` [b x L]. `tags` is accepted and ignored (one loop for all)."""
        return self.autoencode(x)[0]

    def autoencode(self, x: Tensor):
        """(losses, z [b x d], quantizer output): shared with HiD-VAE."""
        z = self.encoder(x)
        q = self.quantizer(z)
        recon = (self.decoder(q.quantized) - x).pow(2).sum(-1).mean()
        out = {"loss": recon + q.loss, "recon_loss": recon, "vq_loss": q.loss, "codes": q.codes}
        return out, z, q

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        return self.quantizer.encode(self.encoder(x))[0]

    @torch.no_grad()
    def tokenize(self, x: Tensor) -> dict[str, Tensor]:
        """One pass for evaluation: `codes` [b x L], `recon_error` [b] = ||x - D(ẑ)||²
        with hard codes (what the SID alone preserves), `code_vectors` [b x L x d]."""
        codes = self.codes(x)
        vectors = torch.stack(
            [self.quantizer.codebooks[level][codes[:, level]] for level in range(codes.shape[1])],
            1,
        )
        recon = (self.decoder(vectors.sum(1)) - x).pow(2).sum(-1)
        return {"codes": codes, "recon_error": recon, "code_vectors": vectors}

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, seed: int = 0) -> None:
        self.quantizer.init_codebooks(self.encoder(x), seed=seed)

    @torch.no_grad()
    def reseed_dead_codes(self, x: Tensor, generator: torch.Generator | None = None) -> list[int]:
        return self.quantizer.reseed_dead_codes(self.encoder(x), generator)
