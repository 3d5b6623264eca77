"""SID-GPT train loop: whole user sequences, one causal pass per user per epoch
with a loss at every item's codes; trie-constrained beam search for evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sidrec.decoding import SidTrie
from sidrec.distributed.train import Reporter, unwrap
from sidrec.models._data import sequence_rows
from sidrec.models.sidgpt import SidGPT, sidgpt
from sidrec.models.train._common import epoch_batches, evaluate_split, fit_select_test, load_data
from sidrec.models.train._generative import beam_protocols, beam_ranker, sid_inputs
from sidrec.models.train.config import SIDGPT_PRESETS, TrainConfig

__all__ = ["build_sidgpt", "sidgpt_train_loop"]


def build_sidgpt(cfg: TrainConfig, num_items: int) -> SidGPT:
    inputs = sid_inputs(cfg, num_items, "SID-GPT")
    if cfg.arch is not None:  # the config's switch decides, whatever arch says
        arch = {**cfg.arch, "hierarchy_aware": cfg.hierarchy_aware}
        return sidgpt(
            inputs["item_codes"], inputs["codebook_sizes"], **arch, tag_text=inputs["tag_text"]
        )
    if cfg.preset not in SIDGPT_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: SID-GPT presets are {sorted(SIDGPT_PRESETS)}")
    return SIDGPT_PRESETS[cfg.preset](**inputs, hierarchy_aware=cfg.hierarchy_aware)


def sidgpt_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """SID-GPT on each user's training sequence (its last max_len + 1 items)."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    device = reporter.device
    net = build_sidgpt(cfg, data.num_items)
    model_cfg = net.cfg
    model = reporter.prepare_model(net)
    # SASRec's optimizer (§4.2: Adam, beta2 0.98): the body is SASRec's.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    step_model = torch.compile(model, dynamic=True) if cfg.compile else model
    trie = SidTrie.build(net.item_codes.cpu(), model_cfg.codebook_sizes).to(device)

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

    # (2) evaluation: constrained beam search, ranks of the target in the top-k.
    rank_batch = beam_ranker(lambda: unwrap(model), trie, cfg.beam_width, data.num_items)
    protocols = beam_protocols(cfg)

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        return evaluate_split(
            unwrap(model), split, model_cfg.max_len, rank_batch, data, protocols, cfg, reporter
        )

    fit_select_test(
        "sidgpt",
        model_cfg.to_dict(),
        model,
        optimizer,
        cfg,
        reporter,
        train_batches,
        loss_fn,
        evaluate,
    )
