"""The loop body shared by the full-catalog sequence models (SASRec, H2Rec): loss at
every position of each user's training sequence, full-catalog scores for
evaluation (primary, `exclude_seen/`, and `sampled{n}/` when asked for)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sidrec.distributed.train import Reporter, unwrap
from sidrec.models._data import sequence_rows
from sidrec.models.train._common import (
    TrainData,
    epoch_batches,
    evaluate_split,
    fit_select_test,
    full_catalog_protocols,
    full_catalog_ranks,
)
from sidrec.models.train.config import TrainConfig

__all__ = ["fit_sequence_model"]


def fit_sequence_model(
    kind: str, net: torch.nn.Module, cfg: TrainConfig, data: TrainData, reporter: Reporter
) -> None:
    """Train, select on valid, test once. net: a model with `cfg.max_len`, `cfg.to_dict()`,
    `forward(inputs, targets) -> loss` and `score(histories) -> [b x N]`."""
    device = reporter.device
    model_cfg = net.cfg
    model = reporter.prepare_model(net)
    # SASRec §4.2: Adam with beta2 0.98. AdamW so that `weight_decay` is honoured;
    # at the recipes' weight_decay 0 its update is Adam's, step for step.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    step_model = torch.compile(model, dynamic=True) if cfg.compile else model

    # (1) training rows on the device: each user's last max_len + 1 items.
    rows = sequence_rows(data.sequences, model_cfg.max_len, cfg.max_users)
    seq = torch.as_tensor(rows.history, device=device)  # [U x max_len+1], -1 left padding

    def next_item_batch(idx: Tensor, length: int):
        x = seq[idx, -length:]  # dense: no padding inside a length bucket
        return x[:, :-1], x[:, 1:]

    def train_batches(epoch: int):
        return epoch_batches(rows, cfg, epoch, reporter, device).map(next_item_batch)

    def loss_fn(batch):
        inputs, targets = batch
        return step_model(inputs, targets)

    # (2) evaluation: full-catalog scores -> ranks under each protocol.
    protocols = full_catalog_protocols(cfg)

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        # The same sampled negatives at every evaluation (CPU generator, fixed seed).
        generator = torch.Generator().manual_seed(cfg.seed)

        def rank_batch(history: Tensor, users: Tensor, targets: Tensor, full: list[np.ndarray]):
            scores = unwrap(model).score(history)  # [b x N]
            return full_catalog_ranks(scores, targets, full, cfg, generator)

        return evaluate_split(
            unwrap(model), split, model_cfg.max_len, rank_batch, data, protocols, cfg, reporter
        )

    fit_select_test(
        kind,
        model_cfg.to_dict(),
        model,
        optimizer,
        cfg,
        reporter,
        train_batches,
        loss_fn,
        evaluate,
    )
