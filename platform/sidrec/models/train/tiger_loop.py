"""TIGER train loop: next-SID cross-entropy on every training prefix,
trie-constrained beam search for evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sidrec.data.catalog import load_split
from sidrec.decoding import SidTrie
from sidrec.distributed.train import Reporter, unwrap
from sidrec.models._data import first_users, split_rows
from sidrec.models.tiger import Tiger, tiger
from sidrec.models.train._common import epoch_batches, evaluate_split, fit_select_test, load_data
from sidrec.models.train._generative import beam_protocols, beam_ranker, sid_inputs
from sidrec.models.train.config import TIGER_PRESETS, TrainConfig

__all__ = ["build_tiger", "tiger_train_loop"]


def build_tiger(cfg: TrainConfig, num_items: int) -> Tiger:
    inputs = sid_inputs(cfg, num_items, "TIGER")
    if cfg.arch is not None:  # the config's switch decides, whatever arch says
        arch = {**cfg.arch, "hierarchy_aware": cfg.hierarchy_aware}
        return tiger(
            inputs["item_codes"], inputs["codebook_sizes"], **arch, tag_text=inputs["tag_text"]
        )
    if cfg.preset not in TIGER_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: TIGER presets are {sorted(TIGER_PRESETS)}")
    return TIGER_PRESETS[cfg.preset](**inputs, hierarchy_aware=cfg.hierarchy_aware)


def tiger_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """TIGER on every training prefix (train split rows), next-SID cross-entropy."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    device = reporter.device
    net = build_tiger(cfg, data.num_items)
    model_cfg = net.cfg
    model = reporter.prepare_model(net)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step_model = torch.compile(model, dynamic=True) if cfg.compile else model
    trie = SidTrie.build(unwrap(model).item_codes.cpu(), model_cfg.codebook_sizes).to(device)

    # (1) training rows on the device: one per prefix of the train split.
    train = first_users(load_split(cfg.root, "train"), cfg.max_users)
    rows = split_rows(train, model_cfg.max_history)
    history = torch.as_tensor(rows.history, device=device)  # [n x H], -1 left padding
    users = torch.as_tensor(rows.users, device=device)
    targets = torch.as_tensor(rows.targets, device=device)

    def prefix_batch(idx: Tensor, length: int):
        return history[idx, -length:], users[idx], targets[idx]

    def train_batches(epoch: int):
        return epoch_batches(rows, cfg, epoch, reporter, device).map(prefix_batch)

    def loss_fn(batch):
        return step_model(*batch)

    # (2) evaluation: constrained beam search, ranks of the target in the top-k.
    rank_batch = beam_ranker(lambda: unwrap(model), trie, cfg.beam_width, data.num_items)
    protocols = beam_protocols(cfg)

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        return evaluate_split(
            unwrap(model), split, model_cfg.max_history, rank_batch, data, protocols, cfg, reporter
        )

    fit_select_test(
        "tiger",
        model_cfg.to_dict(),
        model,
        optimizer,
        cfg,
        reporter,
        train_batches,
        loss_fn,
        evaluate,
    )
