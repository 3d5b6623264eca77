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

__all__ = ["generative_loss", "intra_palette_hinge", "inter_palette_hinge", "lamia_loss"]


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


def lamia_loss(
    gen: Tensor, palette: Tensor, gamma: float, intra_margin: float, inter_margin: float
) -> dict[str, Tensor]:
    """{"loss", "gen", "intra", "inter"}; gamma = 0 is the "w/o L_cl" ablation."""
    intra = intra_palette_hinge(palette, intra_margin)
    inter = inter_palette_hinge(palette, inter_margin)
    return {"loss": gen + gamma * (intra + inter), "gen": gen, "intra": intra, "inter": inter}
