"""H2Rec train loop: SASRec's loop (loss at every position, full-catalog scores)
with the H2Rec model built from a SID table, the LLM item embeddings for the
HID init, and the co-occurrence pairs of the training sequences (Eq. 7).

    fit(h2rec_train_loop, {"root": ..., "sids": ".../sids/x.parquet",
        "embeddings": ".../embeddings/all-minilm-l6-v2.parquet", "preset": "h2rec_beauty",
        "h2rec": {"beta": 0.1, "gamma": 0.1}}, RunSpec(...))
"""

from __future__ import annotations

from typing import Any

import torch

from sidrec.data.embeddings import load_embeddings
from sidrec.data.sids import read_sid_table
from sidrec.distributed.train import Reporter
from sidrec.models._h2rec_losses import cooccurrence_keys
from sidrec.models.h2rec import H2Rec, h2rec
from sidrec.models.train._common import TrainData, load_data
from sidrec.models.train._sequence import fit_sequence_model
from sidrec.models.train.config import H2REC_PRESETS, TrainConfig

__all__ = ["build_h2rec", "h2rec_train_loop"]


def build_h2rec(cfg: TrainConfig, num_items: int) -> H2Rec:
    """The model with the SID table's codes (no disambiguation suffix: see h2rec.py)
    and, when cfg.embeddings is set, the PCA-reduced LLM embeddings as HID init."""
    if cfg.sids is None:
        raise ValueError(
            "H2Rec needs a SID table: set sids (e.g. --sids <root>/sids/<run>.parquet)"
        )
    table = read_sid_table(cfg.sids, num_items=num_items)
    llm = None if cfg.embeddings is None else load_embeddings(cfg.embeddings, num_items=num_items)
    knobs = dict(cfg.h2rec or {})
    if cfg.arch is not None:  # every architecture argument written out (tests, sweeps)
        arch = {**cfg.arch, "loss": cfg.loss}  # the config's loss decides (as --loss)
        return h2rec(table.codes, table.codebook_sizes, **arch, **knobs, item_embeddings=llm)
    if cfg.preset not in H2REC_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: H2Rec presets are {sorted(H2REC_PRESETS)}")
    return H2REC_PRESETS[cfg.preset](
        table.codes, table.codebook_sizes, item_embeddings=llm, loss=cfg.loss, **knobs
    )


def cooccurrence(data: TrainData, cfg: TrainConfig, window: int) -> torch.Tensor:
    """Eq. 7's behavioural positives from the training sequences of the run's users."""
    seqs = data.sequences
    users = seqs.num_users if cfg.max_users is None else min(cfg.max_users, seqs.num_users)
    offsets = seqs.offsets[: users + 1]
    keys = cooccurrence_keys(seqs.items[: offsets[-1]], offsets, window, data.num_items)
    return torch.as_tensor(keys)


def h2rec_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """H2Rec (ranking + beta * alignment + gamma * granularity) at every position."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    net = build_h2rec(cfg, data.num_items)
    # A plain tensor, not a buffer: DDP would broadcast it at every step.
    net.set_cooccurrence(cooccurrence(data, cfg, net.cfg.window))
    fit_sequence_model("h2rec", net, cfg, data, reporter)
