"""SASRec train loop: loss at every position of each user's training sequence,
full-catalog scoring for evaluation."""

from __future__ import annotations

from typing import Any

import torch

from sidrec.distributed.train import Reporter
from sidrec.models.sasrec import SASRec, sasrec
from sidrec.models.train._common import load_data
from sidrec.models.train._sequence import fit_sequence_model
from sidrec.models.train.config import SASREC_PRESETS, TrainConfig

__all__ = ["build_sasrec", "sasrec_train_loop"]


def build_sasrec(cfg: TrainConfig, num_items: int) -> SASRec:
    if cfg.arch is not None:  # the config's loss decides, whatever arch says (as --loss)
        return sasrec(num_items, **{**cfg.arch, "loss": cfg.loss})
    if cfg.preset not in SASREC_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: SASRec presets are {sorted(SASREC_PRESETS)}")
    return SASREC_PRESETS[cfg.preset](num_items, loss=cfg.loss)


def sasrec_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """SASRec with loss at every position over each user's training sequence."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    fit_sequence_model("sasrec", build_sasrec(cfg, data.num_items), cfg, data, reporter)
