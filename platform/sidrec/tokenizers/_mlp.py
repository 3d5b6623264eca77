"""The one MLP the tokenizers build their encoders, decoders and heads from."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear → ReLU (→ Dropout) per hidden width, then a plain Linear to out_dim.

    ReLU and no normalization layers, as in TIGER's RQ-VAE (§4.1): the output
    is a free vector the quantizer measures distances on.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
