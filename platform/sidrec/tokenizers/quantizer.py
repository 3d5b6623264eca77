"""Residual quantizer: L codebooks of K vectors, shared by RQ-VAE and HiD-VAE.

Level l quantizes what levels 0..l-1 left over (TIGER, Rajput et al. 2023,
§3.1; Zeghidour et al. 2021): r_0 = z, c_l = argmin_k ||r_l - e_{l,k}||²,
r_{l+1} = r_l - e_{l,c_l}; the SID is (c_0, ..., c_{L-1}) and ẑ = Σ_l e_{l,c_l}.

- k-means initialization: the first training batch's residuals seed each
  codebook (TIGER §4.1), level by level, so no codeword starts dead.
- straight-through estimator: the decoder sees z + sg(ẑ - z), so the
  reconstruction gradient reaches the encoder unchanged.
- loss: per level ||sg(r_l) - e||² + β ||r_l - sg(e)||² (`losses.vq_loss`).
- dead-code re-seeding: codewords no item uses are moved onto the residuals of
  items that share a crowded code (`reseed_dead_codes`).

Under DDP, initialize before the model is wrapped (`init_codebooks`): DDP
then copies rank 0's codebooks to every rank. The lazy initialization in
`forward` is for single-process use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sidrec.tokenizers.kmeans import kmeans
from sidrec.tokenizers.losses import vq_loss

__all__ = ["ResidualQuantizer", "QuantizerOutput"]


@dataclass
class QuantizerOutput:
    """codes: [b x L] long; quantized: [b x d] = z + sg(ẑ - z) (straight-through);
    code_vectors: [b x L x d] the chosen codewords, value e_{l,c_l}, with gradient
    to both the codebook and the residual (for the tag losses); loss: scalar."""

    codes: Tensor
    quantized: Tensor
    code_vectors: Tensor
    loss: Tensor


class ResidualQuantizer(nn.Module):
    def __init__(
        self,
        levels: int,
        codebook_size: int,
        dim: int,
        commitment_weight: float = 0.25,
        kmeans_iters: int = 25,
        kmeans_backend: str = "auto",
    ):
        super().__init__()
        if levels < 1 or codebook_size < 2 or dim < 1:
            raise ValueError(
                f"levels >= 1, codebook_size >= 2, dim >= 1 required; got "
                f"{levels}, {codebook_size}, {dim}"
            )
        self.levels = levels
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.kmeans_iters = kmeans_iters
        self.kmeans_backend = kmeans_backend
        # [L x K x d]; random until k-means initialization replaces it.
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) * 0.01)
        # A long, not a bool: DDP broadcasts buffers and gloo has no bool type.
        self.register_buffer("initialized", torch.zeros((), dtype=torch.long))

    # -- assignment -------------------------------------------------------

    def _nearest(self, residual: Tensor, level: int) -> Tensor:
        """[b] nearest codeword of `level` for each residual row [b x d]."""
        book = self.codebooks[level]
        distance = (
            residual.pow(2).sum(1, keepdim=True)
            - 2 * residual @ book.T
            + book.pow(2).sum(1)[None, :]
        )
        return distance.argmin(1)

    @torch.no_grad()
    def encode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """codes [b x L] and residuals [b x L x d] (what each level quantized)."""
        residual = z
        codes, residuals = [], []
        for level in range(self.levels):
            code = self._nearest(residual, level)
            codes.append(code)
            residuals.append(residual)
            residual = residual - self.codebooks[level][code]
        return torch.stack(codes, 1), torch.stack(residuals, 1)

    def decode(self, codes: Tensor) -> Tensor:
        """ẑ [b x d] = Σ_l e_{l, codes[:, l]}."""
        return sum(self.codebooks[level][codes[:, level]] for level in range(self.levels))

    # -- training ---------------------------------------------------------

    def forward(self, z: Tensor) -> QuantizerOutput:
        """z: [b x d] encoder outputs."""
        if self.training and not bool(self.initialized):
            self.init_codebooks(z.detach())
        residual = z
        codes, vectors, losses = [], [], []
        for level in range(self.levels):
            code = self._nearest(residual.detach(), level)
            codeword = self.codebooks[level][code]
            losses.append(vq_loss(residual, codeword, self.commitment_weight))
            # Value e, gradient to e (codebook) and to r (encoder): the tag
            # losses shape both the codewords and the encoder.
            vectors.append(codeword + residual - residual.detach())
            codes.append(code)
            residual = residual - codeword.detach()
        z_hat = z - residual  # = Σ_l e_l in value
        return QuantizerOutput(
            codes=torch.stack(codes, 1),
            quantized=z + (z_hat - z).detach(),
            code_vectors=torch.stack(vectors, 1),
            loss=torch.stack(losses).sum(),
        )

    @torch.no_grad()
    def init_codebooks(self, z: Tensor, seed: int = 0) -> None:
        """k-means on the residuals of z [n x d], level by level; n >= K."""
        if z.shape[0] < self.codebook_size:
            raise ValueError(
                f"codebook_size={self.codebook_size} is larger than the {z.shape[0]} "
                "items available to initialize it; lower codebook_size"
            )
        residual = z.detach().float()
        for level in range(self.levels):
            centroids = kmeans(
                residual.cpu().numpy(),
                self.codebook_size,
                iters=self.kmeans_iters,
                seed=seed + level,
                backend=self.kmeans_backend,
            )
            self.codebooks.data[level] = torch.as_tensor(centroids, device=z.device)
            residual = residual - self.codebooks[level][self._nearest(residual, level)]
        self.initialized.fill_(1)

    @torch.no_grad()
    def reseed_dead_codes(self, z: Tensor, generator: torch.Generator | None = None) -> list[int]:
        """Move every codeword no row of z [n x d] uses onto a residual that needs one.

        Donors are drawn from items whose code at that level is shared with
        others (splitting a crowded code is what lowers collisions), falling
        back to any item. Returns how many codewords were moved per level.
        Deterministic for a given generator, so DDP ranks stay in step.
        """
        moved = []
        residual = z.detach()
        for level in range(self.levels):
            code = self._nearest(residual, level)
            counts = torch.bincount(code, minlength=self.codebook_size)
            dead = torch.nonzero(counts == 0).squeeze(1)
            moved.append(0)
            if dead.numel():
                crowded = torch.nonzero(counts[code] > 1).squeeze(1)
                pool = (
                    crowded
                    if crowded.numel() >= dead.numel()
                    else torch.arange(residual.shape[0], device=z.device)
                )
                pick = pool[
                    torch.randperm(pool.numel(), generator=generator)[: dead.numel()].to(
                        pool.device
                    )
                ]
                self.codebooks.data[level, dead[: pick.numel()]] = residual[pick]
                code = self._nearest(residual, level)
                moved[-1] = int(pick.numel())
            residual = residual - self.codebooks[level][code]
        return moved
