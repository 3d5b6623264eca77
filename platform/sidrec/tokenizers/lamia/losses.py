"""LAMIA's training objective (§4.2.2–4.2.3).

    L = L_gen + γ (L_intra + L_inter)

- L_gen: token cross-entropy on the answer tokens of every attribute task
  (the task token and the content never count);
- L_intra (intra-palette): the L vectors of one item should describe
  different aspects, so any two of them pay a hinge once their cosine
  exceeds α_intra: mean over items and pairs l < m of
  max(0, cos(p_il, p_im) - α_intra);
- L_inter (inter-palette): the same palette position of two different items
  should tell them apart: mean over positions l and item pairs i < j of the
  batch of max(0, cos(p_il, p_jl) - α_inter).

Both hinges act on L2-normalized palette vectors (cosines), with the paper's
margins α_intra = 0.1, α_inter = 0.25 and weight γ = 0.1 as the defaults in
`LamiaConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "generative_loss",
    "intra_palette_hinge",
    "inter_palette_hinge",
    "position_similarity",
    "lamia_loss",
]


def generative_loss(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """Mean cross-entropy over the valid answer tokens.

    logits: [m x n x V]; targets: [m x n] token ids; valid: [m x n] bool.
    """
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid].float(), targets[valid])


def _pair_hinge(cos: Tensor, margin: float) -> Tensor:
    """cos: [g x n x n] cosine matrices → mean hinge over the pairs i < j."""
    n = cos.shape[-1]
    if n < 2:
        return cos.sum() * 0.0
    upper = torch.ones(n, n, dtype=torch.bool, device=cos.device).triu(1)
    return F.relu(cos[:, upper] - margin).mean()


def intra_palette_hinge(palette: Tensor, margin: float) -> Tensor:
    """palette: [b x L x d] → scalar, the L_intra term (pairs inside one item)."""
    p = F.normalize(palette.float(), dim=-1)
    return _pair_hinge(p @ p.transpose(1, 2), margin)


def inter_palette_hinge(palette: Tensor, margin: float) -> Tensor:
    """palette: [b x L x d] → scalar, the L_inter term (same position, two items)."""
    p = F.normalize(palette.float(), dim=-1).transpose(0, 1)  # [L x b x d]
    return _pair_hinge(p @ p.transpose(1, 2), margin)


def position_similarity(palette: Tensor) -> Tensor:
    """palette: [b x L x d] → mean over position pairs l < m of the linear CKA
    between positions l and m across the batch: how alike the item-to-item
    similarity structures the two positions induce are (1 = one is a rotation
    and scaling of the other, 0 = unrelated).

    Cosine hinges cannot see this: p_m = R p_l for a rotation R can be
    orthogonal to p_l item by item yet carries the same information, and the
    per-position PCA + K-Means then cuts the catalog the same way at every
    position. CKA compares b x b Gram matrices (debiased: `_unbiased_hsic`),
    so it is defined for batches smaller than the palette width.
    """
    b, levels, _ = palette.shape
    if b < 4 or levels < 2:
        return palette.sum() * 0.0
    # The estimator ignores a shift of the features; centering first keeps
    # float32 from cancelling a large shared component away.
    x = palette.float() if palette.dtype != torch.float64 else palette
    x = x - x.mean(dim=0, keepdim=True)
    gram = torch.einsum("bld,cld->lbc", x, x)  # [L x b x b]
    hsic = _unbiased_hsic(gram)
    norm = hsic.diagonal().clamp_min(1e-12).sqrt()
    cka = (hsic / (norm[:, None] * norm[None, :])).clamp_min(0.0)
    upper = torch.ones(levels, levels, dtype=torch.bool, device=palette.device).triu(1)
    return cka[upper].mean()


def _unbiased_hsic(gram: Tensor) -> Tensor:
    """[L x b x b] Gram matrices → [L x L] unbiased HSIC estimates (Song et al.
    2012). The plain (biased) estimator puts two unrelated 384-d positions of
    a 64-item batch at CKA ~0.86; this one at ~0."""
    n = gram.shape[-1]
    k = gram * (1 - torch.eye(n, device=gram.device, dtype=gram.dtype))
    rows = k.sum(dim=2)  # [L x b]
    total = rows.sum(dim=1)  # [L]
    hsic = (
        torch.einsum("lbc,mbc->lm", k, k)
        + total[:, None] * total[None, :] / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * rows @ rows.T
    )
    return hsic / (n * (n - 3))


def lamia_loss(
    gen: Tensor,
    palette: Tensor,
    gamma: float,
    intra_margin: float,
    inter_margin: float,
    centered: bool = False,
    decorrelate: float = 0.0,
) -> dict[str, Tensor]:
    """{"loss", "gen", "intra", "inter", "cka"}; gamma = 0 is the "w/o L_cl"
    ablation; decorrelate > 0 adds that weight times
    `position_similarity` (not in the paper: off by default).

    centered: the hinges see each position's palette minus its batch mean. On
    raw vectors both hinges can be met by one constant offset per position
    while the item-specific parts stay alike across positions; the codes come
    from PCA, which removes that offset, so only the centered vectors matter.
    """
    if centered and palette.shape[0] > 1:
        palette = palette - palette.mean(dim=0, keepdim=True)
    intra = intra_palette_hinge(palette, intra_margin)
    inter = inter_palette_hinge(palette, inter_margin)
    loss = gen + gamma * (intra + inter)
    cka = position_similarity(palette) if decorrelate > 0 else palette.new_zeros(())
    return {
        "loss": loss + decorrelate * cka,
        "gen": gen,
        "intra": intra,
        "inter": inter,
        "cka": cka,
    }
