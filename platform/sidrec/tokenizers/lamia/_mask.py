"""LAMIA's hierarchical attention mask over block-wise input (§4.2.1, Fig. 3).

The input is a row of blocks, content ‖ LaP ‖ LdP ‖ task:

- content  C: the item's text tokens;
- LaP      P: L learnable palette tokens, whose outputs are the item palette;
- LdP      D: L placeholder tokens, replaced by the palette in the second pass;
- task     T: the task token then the answer tokens.

Visibility (True = the query may attend to the key):

- inside every block: causal (a decoder-only LM; the encoder backbone keeps
  its content block bidirectional, as it was pretrained);
- P → C: palette tokens read the content (the only way content enters);
- T → D: the task block reads the placeholders (the only way the palette
  reaches the answer);
- every other cross-block path is closed: content never sees the palette,
  the task block never sees content or LaP, placeholders see only themselves.

Because closed paths stay closed at every layer, no task position depends on
a content token except through the palette: `test_lamia_mask.py` checks it
with gradients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["CONTENT", "PALETTE", "PLACEHOLDER", "TASK", "LAMIA_CROSS", "block_ids", "block_mask"]

CONTENT, PALETTE, PLACEHOLDER, TASK = "content", "palette", "placeholder", "task"
# The two open cross-block paths of §4.2.1: (query block, key block).
LAMIA_CROSS: frozenset[tuple[str, str]] = frozenset({(PALETTE, CONTENT), (TASK, PLACEHOLDER)})


def block_ids(lengths: Sequence[int]) -> Tensor:
    """[S] the block index of each position, S = sum(lengths)."""
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(list(lengths)))


def block_mask(
    blocks: Sequence[tuple[str, int]],
    key_valid: Tensor | None = None,
    cross: Iterable[tuple[str, str]] = LAMIA_CROSS,
    bidirectional: Iterable[str] = (),
) -> Tensor:
    """The hierarchical mask for blocks laid out in order.

    blocks: (name, length) in sequence order, e.g. [(CONTENT, 12), (PALETTE, 4)];
    key_valid: [b x S] bool, False at padding (never attended); None = no padding;
    cross: the open (query block, key block) paths; bidirectional: blocks
    attended in full inside (the encoder's content), the others causally.

    Returns [b x S x S] bool (b = 1 without key_valid). Each position may
    always attend to itself, so a padding row never has an empty softmax.
    """
    names = [name for name, _ in blocks]
    ids = block_ids([length for _, length in blocks])
    s = ids.numel()
    same = ids[:, None] == ids[None, :]
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    full = torch.tensor([names[i] in set(bidirectional) for i in ids.tolist()], dtype=torch.bool)
    allowed = same & (causal | full[:, None])
    open_paths = set(cross)
    for q, qname in enumerate(names):
        for k, kname in enumerate(names):
            if (qname, kname) in open_paths:
                allowed |= (ids[:, None] == q) & (ids[None, :] == k)
    allowed = allowed[None]
    if key_valid is not None:
        if key_valid.shape[-1] != s:
            raise ValueError(f"key_valid: expected [b x {s}], got {tuple(key_valid.shape)}")
        allowed = allowed & key_valid[:, None, :].bool()
    return allowed | torch.eye(s, dtype=torch.bool)[None]


def additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[b x S x S] bool → [b x 1 x S x S] additive float mask (0 open, min closed),
    the form every HF attention implementation accepts as a custom 4D mask."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    closed = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    return torch.where(mask, zero, closed)[:, None]


def packed_positions(valid: Tensor, start: Tensor | None = None) -> Tensor:
    """[b x S] position ids counting only valid tokens (padding repeats its
    predecessor's id), offset by start [b]: a row's ids do not depend on how
    much padding the batch added."""
    pos = valid.long().cumsum(1) - 1
    pos = pos.clamp(min=0)
    return pos if start is None else pos + start[:, None]
