"""The tokenizer losses, each a plain function on tensors (no module state).

Shapes: b batch, d feature width, L code levels, T tags at one level.

- `vq_loss`: VQ-VAE codebook + commitment terms (van den Oord et al. 2017, Eq. 3),
  the quantizer loss of RQ-VAE (TIGER, Rajput et al. 2023, §3.1) and HiD-VAE.
- `info_nce`: HiD-VAE Eq. 5, tag alignment of the quantized codes (τ = 0.07).
- `focal_loss`: HiD-VAE Eq. 6, tag prediction (Lin et al. 2017; γ = 2).
- `uniqueness_loss`: HiD-VAE Eq. 7, a hinge on the cosine similarity of the
  encoder outputs of distinct items whose full SIDs collide (m = 0.9).
- `colliding_pairs`: the pairs Eq. 7 sums over, found by hashing code rows
  (sort + group, O(b log b)); `colliding_pairs_reference` is the O(b²) scan it
  is tested against.

Every loss that takes a `mask` averages over the rows the mask keeps and is 0
(still attached to the graph) when it keeps none: an item without a tag at a
level simply does not count at that level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# One packing of code rows into integers for the whole library (eval/sids.py).
from sidrec.eval.sids import _row_keys

__all__ = [
    "vq_loss",
    "info_nce",
    "focal_loss",
    "colliding_pairs",
    "colliding_pairs_reference",
    "uniqueness_loss",
]


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of `values` [b] over `mask` [b] (bool); 0 with the graph kept when empty."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def vq_loss(residual: Tensor, codeword: Tensor, commitment_weight: float) -> Tensor:
    """||sg(r) - e||² + β ||r - sg(e)||², summed over features, mean over rows.

    residual, codeword: [b x d]. The first term moves the codeword toward the
    encoder output, the second (β, "commitment") keeps the encoder near its
    codeword; TIGER and HiD-VAE both use β = 0.25.
    """
    codebook = (residual.detach() - codeword).pow(2).sum(-1)
    commitment = (residual - codeword.detach()).pow(2).sum(-1)
    return (codebook + commitment_weight * commitment).mean()


def info_nce(
    queries: Tensor,
    keys: Tensor,
    targets: Tensor,
    temperature: float,
    mask: Tensor | None = None,
) -> Tensor:
    """InfoNCE of each query against a candidate set, positive = `keys[targets[i]]`.

    queries: [b x d] (projected codes); keys: [T x d] (tag embeddings);
    targets: [b] in 0..T-1; mask: [b] bool, False = no tag, left out.
    Cosine similarity over τ, then cross-entropy: HiD-VAE Eq. 5. The candidates
    are the level's distinct tags rather than one per batch row, so two items
    of the same category are never each other's negatives.
    """
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    safe = targets.clamp(min=0)  # masked rows may hold -1
    return _masked_mean(F.cross_entropy(logits, safe, reduction="none"), mask)


def focal_loss(logits: Tensor, targets: Tensor, gamma: float, mask: Tensor | None = None) -> Tensor:
    """-(1 - p_t)^γ log p_t (HiD-VAE Eq. 6); at γ = 0 it is cross-entropy.

    logits: [b x T]; targets: [b]; mask: [b] bool. γ down-weights the
    examples the classifier already gets right, so rare fine-grained tags
    keep a say in the gradient.
    """
    safe = targets.clamp(min=0)
    log_p = F.log_softmax(logits, dim=-1).gather(1, safe[:, None]).squeeze(1)
    weight = (1.0 - log_p.exp()).clamp(min=0.0).pow(gamma) if gamma else 1.0
    return _masked_mean(-weight * log_p, mask)


def colliding_pairs(
    codes: Tensor, max_pairs: int | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Index pairs (i, j), i < j, of rows whose codes are equal: ([p], [p]).

    codes: [b x L]. Each row is packed into one integer and the rows sorted by
    it, so equal SIDs end up next to each other; the pairs inside each run are
    then enumerated with index arithmetic. Cost O(b log b + p), never O(b²)
    unless every row collides. With `max_pairs`, a larger set is replaced by
    `max_pairs` pairs drawn uniformly from it (with replacement), so one
    collapsed codebook cannot blow up memory.
    """
    device = codes.device
    empty = torch.empty(0, dtype=torch.long, device=device)
    if codes.shape[0] < 2:
        return empty, empty
    keys = _row_keys(codes.long())
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    # Runs of equal keys: start position and size of each run, per sorted row.
    new_run = torch.ones_like(sorted_keys, dtype=torch.bool)
    new_run[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1
    starts = torch.nonzero(new_run).squeeze(1)
    sizes = torch.bincount(run_id)
    position = torch.arange(len(order), device=device)
    run_start = starts[run_id]
    run_end = run_start + sizes[run_id]  # exclusive
    # Each sorted row pairs with every later row of its run.
    partners = run_end - position - 1
    total = int(partners.sum())
    if total == 0:
        return empty, empty
    if max_pairs is not None and total > max_pairs:
        # Uniform over the unordered pairs: pick the first row with weight
        # (#later rows of its run), then one of those later rows uniformly.
        first = torch.multinomial(
            partners.double(), max_pairs, replacement=True, generator=generator
        )
        offset = (
            torch.rand(max_pairs, device=device, generator=generator) * partners[first]
        ).long()
        second = first + 1 + offset.clamp(max=partners[first] - 1)
    else:
        first = torch.repeat_interleave(position, partners)
        # 0, 1, ..., partners-1 within each first row's block.
        block_start = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners)
        second = first + 1 + (torch.arange(total, device=device) - block_start)
    i, j = order[first], order[second]
    return torch.minimum(i, j), torch.maximum(i, j)


def colliding_pairs_reference(codes: Tensor) -> tuple[Tensor, Tensor]:
    """The O(b²) all-pairs scan that `colliding_pairs` must agree with (tests only)."""
    equal = (codes[:, None, :] == codes[None, :, :]).all(-1)
    i, j = torch.nonzero(torch.triu(equal, diagonal=1), as_tuple=True)
    return i, j


def uniqueness_loss(
    z: Tensor,
    codes: Tensor,
    margin: float,
    max_pairs: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """HiD-VAE Eq. 7: mean over colliding pairs of max(0, cos(z_i, z_j) - m).

    z: [b x d] encoder outputs; codes: [b x L] their full SIDs. Pairs of
    distinct items on one SID whose encodings are still more similar than the
    margin m are pushed apart; pairs already below it cost nothing. Returns
    (loss, number of pairs); the loss is an exact 0 when nothing collides.
    """
    i, j = colliding_pairs(codes, max_pairs=max_pairs, generator=generator)
    if i.numel() == 0:
        return z.new_zeros(()), 0
    cos = F.cosine_similarity(z[i], z[j], dim=-1)
    return F.relu(cos - margin).mean(), int(i.numel())
