"""LM-Rec train loop (LAMIA §5.4 v): L_rip + lambda * L_align in phase 1, L_rip alone
in phase 2, selection and early stopping on valid R@10, trie beam search for
evaluation (`sidrec.models.lmrec`).

Rows are each user's last max_history + 1 training items. A causal backbone
trains on every next item of the row in one pass; a prefix-LM backbone trains
on one target per row, the row cut at a random point redrawn each epoch (every
prefix is seen over epochs, at one pass per user per epoch).

Phases (LAMIA: "after model convergence in the initial phase, the model is
further tuned by the single generative recommendation task"): phase 2 starts
after `phase1_epochs` epochs or, when that is None, once valid stops improving
for `phase1_patience` evaluations; the switch restarts the early-stopping
count. The plateau switch is in every checkpoint, so a run restarted by Ray
resumes in the phase it was in. L_align's items are drawn uniformly from the catalog each step
(not from the batch), so tail items get their text-token alignment too.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from sidrec.data import load_items
from sidrec.decoding import SidTrie
from sidrec.distributed.train import Reporter, unwrap
from sidrec.models._data import Rows, sequence_rows
from sidrec.models.lmrec import LMRec, lmrec, tokenize_item_texts
from sidrec.models.train._common import epoch_batches, evaluate_split, fit_select_test, load_data
from sidrec.models.train._generative import beam_protocols, beam_ranker, sid_inputs
from sidrec.models.train.config import LMREC_LOOP_KNOBS, LMREC_PRESETS, TrainConfig

__all__ = ["LMREC_LOOP_DEFAULTS", "build_lmrec", "cut_rows", "lmrec_train_loop"]

log = logging.getLogger(__name__)

# lambda = 1: L_align (the mean of its two directions) weighs as much as L_rip;
# LAMIA does not give a weight (LC-Rec mixes its tasks as equal instruction data).
LMREC_LOOP_DEFAULTS: dict[str, Any] = {
    "align_weight": 1.0,
    "align_batch": 32,
    "phase1_epochs": None,
    "phase1_patience": 2,
}


def build_lmrec(cfg: TrainConfig, num_items: int) -> LMRec:
    """The preset (or `arch`: every LMRecConfig field) with cfg.lmrec's model knobs over it."""
    if cfg.hierarchy_aware:
        raise ValueError("LM-Rec has no hierarchy-aware SID embeddings: set hierarchy_aware=False")
    inputs = sid_inputs(cfg, num_items, "LM-Rec")
    knobs = {k: v for k, v in (cfg.lmrec or {}).items() if k not in LMREC_LOOP_KNOBS}
    codes, sizes = inputs["item_codes"], inputs["codebook_sizes"]
    if cfg.arch is not None:
        return lmrec(codes, sizes, **{**cfg.arch, **knobs})
    if cfg.preset not in LMREC_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: LM-Rec presets are {sorted(LMREC_PRESETS)}")
    return LMREC_PRESETS[cfg.preset](codes, sizes, **knobs)


def cut_rows(rows: Rows, rng: np.random.Generator) -> Rows:
    """Each row cut after a random item (uniform over its 2nd..last): the last kept
    item becomes the row's target. rows.history: [n x W], left-padded with -1."""
    n = rows.lengths
    keep = rng.integers(2, n + 1)  # items kept, target included: 2..n
    shift = n - keep
    cols = np.arange(rows.history.shape[1])[None, :] - shift[:, None]
    picked = np.take_along_axis(rows.history, np.clip(cols, 0, None), 1)
    history = np.where(cols >= 0, picked, -1)
    return Rows(rows.users, history, keep.astype(np.int64), rows.targets)


def lmrec_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """LM-Rec on each user's training sequence (its last max_history + 1 items)."""
    cfg = TrainConfig.from_dict(config)
    knobs = {**LMREC_LOOP_DEFAULTS, **{k: v for k, v in (cfg.lmrec or {}).items()
                                       if k in LMREC_LOOP_KNOBS}}  # fmt: skip
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    device = reporter.device
    net = build_lmrec(cfg, data.num_items)
    model_cfg = net.cfg
    items = load_items(cfg.root)
    net.set_item_text(
        *tokenize_item_texts(net.tokenizer, items, model_cfg.title_tokens, model_cfg.align_tokens)
    )
    if model_cfg.sid_init == "text":  # a resumed run's checkpoint overwrites it
        net.seed_sids_from_text()
    model = reporter.prepare_model(net)
    # LAMIA trains with Adam; only LoRA, the SID embeddings and the heads train.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    trie = SidTrie.build(net.item_codes.cpu(), model_cfg.codebook_sizes).to(device)

    # (1) training rows: each user's last max_history + 1 items.
    rows = sequence_rows(data.sequences, model_cfg.max_history, cfg.max_users)

    def train_batches(epoch: int):
        epoch_rows = rows
        if net.prefix_lm:  # one target per row: a fresh cut point every epoch
            epoch_rows = cut_rows(rows, np.random.default_rng([cfg.seed, epoch, 17]))
        seq = torch.as_tensor(epoch_rows.history, device=device)
        batches = epoch_batches(epoch_rows, cfg, epoch, reporter, device)
        return batches.map(lambda idx, length: (seq[idx, -length:], epoch))

    phase = {"two": False, "best": -math.inf, "flat": 0}
    generator = torch.Generator().manual_seed(cfg.seed)

    def in_phase1(epoch: int) -> bool:
        if knobs["align_weight"] <= 0:
            return False
        if knobs["phase1_epochs"] is not None:
            return epoch < knobs["phase1_epochs"]
        return not phase["two"]

    def loss_fn(batch):
        x, epoch = batch
        if not in_phase1(epoch):
            return model(x)
        align = torch.randint(data.num_items, (knobs["align_batch"],), generator=generator)
        return model(x, align.to(device), knobs["align_weight"], generator)

    def new_phase(epoch: int, valid: dict[str, float]) -> bool:
        """Phase 2 once valid has not improved for phase1_patience evaluations."""
        if knobs["phase1_epochs"] is not None:
            return epoch + 1 == knobs["phase1_epochs"]
        if phase["two"] or knobs["align_weight"] <= 0:
            return False
        metric = valid[cfg.select_metric]
        phase["best"], phase["flat"] = (
            (metric, 0) if metric > phase["best"] else (phase["best"], phase["flat"] + 1)
        )
        if phase["flat"] < knobs["phase1_patience"]:
            return False
        phase["two"] = True
        log.info("lmrec: phase 2 (L_rip alone) from epoch %d", epoch + 1)
        return True

    # (2) evaluation: constrained beam search, ranks of the target in the top-k.
    rank_batch = beam_ranker(lambda: unwrap(model), trie, cfg.beam_width, data.num_items)
    protocols = beam_protocols(cfg)

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        return evaluate_split(
            unwrap(model), split, model_cfg.max_history, rank_batch, data, protocols, cfg, reporter
        )

    fit_select_test(
        "lmrec",
        model_cfg.to_dict(),
        model,
        optimizer,
        cfg,
        reporter,
        train_batches,
        loss_fn,
        evaluate,
        new_phase=new_phase,
        loop_state=phase,
    )
