"""The trainables `bench/mfu.py` measures, each as a `Loop`: one epoch's batches in
the order its train loop visits them, and the loop's own training step.

Each builder uses the train code's pieces (builders, presets and recipes from
`sidrec.models.train` and the tokenizer modules; `sequence_rows`/`split_rows` +
`epoch_batches` for the recommenders' length-bucketed, padding-free batches;
`epoch_order` for RQ-VAE/HiD-VAE; LAMIA's own `_step`), and the step body copies
the loop's: forward, `zero_grad`, backward, clip when the recipe clips,
optimizer step (and the LR scheduler / per-step loss reads the loop does).
Only the data-parallel wrapper is left out: the bench runs one process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from _beauty_runs import SIDGPT_D128_COSINE  # bench/, beside this module

from sidrec.data import load_items, load_split, train_sequences
from sidrec.data.embeddings import load_embeddings
from sidrec.models._data import first_users, sequence_rows, split_rows
from sidrec.models.lmrec import tokenize_item_texts
from sidrec.models.registry import model_kind
from sidrec.models.train import build_h2rec, build_lmrec, build_sasrec, build_sidgpt, build_tiger
from sidrec.models.train._common import TrainData, epoch_batches
from sidrec.models.train.config import TrainConfig
from sidrec.models.train.h2rec_loop import cooccurrence
from sidrec.models.train.lmrec_loop import LMREC_LOOP_DEFAULTS, cut_rows
from sidrec.models.train.run_config import train_config
from sidrec.overrides import apply_overrides
from sidrec.tokenizers import hidvae_beauty_tuned, rqvae_tiger
from sidrec.tokenizers.lamia import build_model, item_attributes, lamia_minilm_small
from sidrec.tokenizers.lamia.train import _step as lamia_step  # the loop's own step
from sidrec.tokenizers.tags import tag_centroids
from sidrec.tokenizers.train import (
    _OPTIMIZERS,
    _first_batch,  # the loop's codebook-init batch
    epoch_lr,
    epoch_order,
    evaluate_tokenizer,
    load_tags,
)

__all__ = ["LOOPS", "Inputs", "Loop"]


@dataclass
class Inputs:
    """Where the artifacts are and how much of the data a run reads."""

    root: str  # artifact root: catalog/, splits/
    sids: str  # SID table for TIGER, SID-GPT, H2Rec (sids/rqvae.parquet)
    embeddings: str  # item embeddings for H2Rec's HID init and the VAE tokenizers
    max_users: int | None  # recommenders: users 0..max_users-1 (None = all)
    tiny: bool  # smaller tokenizer batches (tests only)


@dataclass
class Loop:
    """One trainable. run(batch) = one training step as its train loop takes it."""

    label: str  # the table's row name
    config: str  # preset / recipe, for the reader
    batches: list[Any]  # one epoch, in loop order
    run: Callable[[Any], None]
    work: Callable[[Any], int]  # examples/tokens of a batch: extrapolates time and FLOPs
    unit: str  # what `work` counts
    # Batch -> a key that fixes the step's FLOPs (its shapes), None when the FLOPs
    # also depend on the data (H2Rec's alignment pairs, HiD-VAE's colliding pairs).
    key: Callable[[Any], Any] | None = None
    logits: dict[str, int] | None = None  # full-softmax CE: {"d": width, "n": catalog}


# -- recommenders ------------------------------------------------------------


def _train_config(kind: str, inputs: Inputs, **over: Any) -> TrainConfig:
    """The kind's recipe from the registry (what jobs/train_recommender.py uses)."""
    return TrainConfig.from_dict(
        {**model_kind(kind).recipe, "root": inputs.root, "max_users": inputs.max_users, **over}
    )


def _recommender_step(model, optimizer, cfg: TrainConfig) -> Callable[[tuple], None]:
    """The body of `fit_select_test`'s step loop (LambdaLR warm-up included)."""
    warm = cfg.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
    )
    model.train()

    def step(tensors: tuple) -> None:
        loss = model(*tensors)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()

    return step


def _one_process():
    return SimpleNamespace(world_size=1, rank=0, device=torch.device("cpu"))


def _sequence_loop(label, kind, inputs, net, cfg, optimizer, logits=None) -> Loop:
    """SASRec, H2Rec, SID-GPT: each user's last max_len + 1 items, loss at every position."""
    rows = sequence_rows(train_sequences(inputs.root), net.cfg.max_len, cfg.max_users)
    seq = torch.as_tensor(rows.history)  # [U x max_len+1], -1 left padding
    batches = list(epoch_batches(rows, cfg, 0, _one_process(), torch.device("cpu")))
    step = _recommender_step(net, optimizer, cfg)

    def run(batch):
        idx, length = batch
        x = seq[idx, -length:]
        step((x[:, :-1], x[:, 1:]))

    return Loop(
        label,
        f"{cfg.preset}, batch {cfg.batch_size}",
        batches,
        run,
        work=lambda b: len(b[0]) * (b[1] - 1),
        unit="positions",
        key=None if kind == "h2rec" else (lambda b: (len(b[0]), b[1])),
        logits=logits,
    )


def sasrec_loop(inputs: Inputs) -> Loop:
    cfg = _train_config("sasrec", inputs, loss="ce")
    n = load_items(inputs.root).num_rows
    net = build_sasrec(cfg, n)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    logits = {"d": net.cfg.d_model, "n": n}
    return _sequence_loop("SASRec-CE", "sasrec", inputs, net, cfg, opt, logits)


def h2rec_loop(inputs: Inputs) -> Loop:
    cfg = _train_config("h2rec", inputs, loss="ce", sids=inputs.sids, embeddings=inputs.embeddings)
    n = load_items(inputs.root).num_rows
    net = build_h2rec(cfg, n)
    data = TrainData(n, train_sequences(inputs.root), None, None, None)
    net.set_cooccurrence(cooccurrence(data, cfg, net.cfg.window))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    logits = {"d": 2 * net.cfg.d_model, "n": n}  # Eq. 9: [HID ; SID] user and item sides
    return _sequence_loop("H2Rec-CE", "h2rec", inputs, net, cfg, opt, logits)


def sidgpt_loop(inputs: Inputs) -> Loop:
    cfg = _train_config("sidgpt", inputs, sids=inputs.sids)
    net = build_sidgpt(cfg, load_items(inputs.root).num_rows)
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    return _sequence_loop("SID-GPT", "sidgpt", inputs, net, cfg, opt)


def sidgpt_d128_loop(inputs: Inputs) -> Loop:
    """The `sidgpt_*_d128_cosine` quality runs' knobs over sidgpt_beauty, as their
    --set gives them (the lr schedule changes no step's cost)."""
    run = apply_overrides(model_kind("sidgpt").default_run(), list(SIDGPT_D128_COSINE))
    over = {"root": inputs.root, "max_users": inputs.max_users, "sids": inputs.sids}
    cfg = TrainConfig.from_dict({**train_config(run, "sidgpt_beauty"), **over})
    net = build_sidgpt(cfg, load_items(inputs.root).num_rows)
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    loop = _sequence_loop("SID-GPT d128x4", "sidgpt", inputs, net, cfg, opt)
    return dataclasses.replace(loop, config=f"sidgpt_beauty d128x4, batch {cfg.batch_size}")


def tiger_loop(inputs: Inputs) -> Loop:
    """Every training prefix (train split rows), next-SID cross-entropy."""
    cfg = _train_config("tiger", inputs, sids=inputs.sids, preset="tiger_cpu")
    net = build_tiger(cfg, load_items(inputs.root).num_rows)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = first_users(load_split(inputs.root, "train"), cfg.max_users)
    rows = split_rows(train, net.cfg.max_history)
    history, users = torch.as_tensor(rows.history), torch.as_tensor(rows.users)
    targets = torch.as_tensor(rows.targets)
    batches = list(epoch_batches(rows, cfg, 0, _one_process(), torch.device("cpu")))
    step = _recommender_step(net, opt, cfg)
    levels = net.cfg.num_levels

    def run(batch):
        idx, length = batch
        step((history[idx, -length:], users[idx], targets[idx]))

    return Loop(
        "TIGER",
        f"tiger_cpu, batch {cfg.batch_size}",
        batches,
        run,
        # recommender_speed.py's count: encoder 1 + s * L' tokens, decoder L'
        work=lambda b: len(b[0]) * (1 + b[1] * levels + levels),
        unit="tokens",
        key=lambda b: (len(b[0]), b[1]),
    )


def lmrec_loop(inputs: Inputs, label: str = "LM-Rec", **arch: Any) -> Loop:
    """LM-Rec (lmrec_minilm, LMREC_RECIPE: batch 64; `arch` over the preset) in
    phase 1: L_rip on each user's whole row (causal, the preset's mode; a row cut
    at a random point in prefix-LM mode) + lambda * L_align on align_batch catalog
    items, the loop's own forward. FLOPs: the backbone's frozen matmuls
    (forward, and backward to the activations) + LoRA's + the heads'."""
    # --tiny: short histories and small batches, seconds per step (tests only).
    knobs = {**({"max_history": 5} if inputs.tiny else {}), **arch}
    tiny = {"batch_size": 16} if inputs.tiny else {}
    cfg = _train_config("lmrec", inputs, sids=inputs.sids, lmrec=knobs or None, **tiny)
    items = load_items(inputs.root)
    net = build_lmrec(cfg, items.num_rows)
    net.set_item_text(
        *tokenize_item_texts(net.tokenizer, items, net.cfg.title_tokens, net.cfg.align_tokens)
    )
    opt = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    rows = sequence_rows(train_sequences(inputs.root), net.cfg.max_history, cfg.max_users)
    if net.prefix_lm:
        rows = cut_rows(rows, np.random.default_rng([cfg.seed, 0, 17]))
    seq = torch.as_tensor(rows.history)
    batches = list(epoch_batches(rows, cfg, 0, _one_process(), torch.device("cpu")))
    step = _recommender_step(net, opt, cfg)
    align, weight = LMREC_LOOP_DEFAULTS["align_batch"], LMREC_LOOP_DEFAULTS["align_weight"]
    align = 8 if inputs.tiny else align

    def run(batch):
        idx, length = batch
        g = torch.Generator().manual_seed(int(idx[0]))  # replayable for FLOP counting
        step((seq[idx, -length:], torch.randint(items.num_rows, (align,), generator=g), weight, g))

    return Loop(
        label,
        f"{cfg.preset} r{net.cfg.lora_rank}, batch {cfg.batch_size}",
        batches,
        run,
        work=lambda b: len(b[0]),
        unit="rows",
    )


# -- tokenizers -------------------------------------------------------------


def _vae_loop(label: str, cfg, inputs: Inputs) -> Loop:
    """RQ-VAE / HiD-VAE: `sidrec.tokenizers.train.train_loop`'s epoch 0 on one process."""
    if inputs.tiny:
        cfg = dataclasses.replace(cfg, batch_size=256, kmeans_iters=2)
    x_np = load_embeddings(inputs.embeddings)
    n, dim = x_np.shape
    supervised = hasattr(cfg, "supervised_levels")
    levels = cfg.supervised_levels if supervised else cfg.levels
    items = f"{inputs.root}/catalog/items.parquet"
    tags = load_tags(items, n, levels, required=supervised)
    torch.manual_seed(cfg.seed)
    model = cfg.build(dim, tags.sizes if tags is not None else None)
    if supervised:
        model.set_tag_embeddings(tag_centroids(x_np, tags))
    x = torch.as_tensor(x_np)
    tag_ids = torch.as_tensor(tags.ids if tags is not None else np.zeros((n, 0), np.int64))
    model.init_codebooks(x[_first_batch(n, cfg)], seed=cfg.seed)
    optimizer = _OPTIMIZERS[cfg.optimizer](
        model.parameters(), lr=epoch_lr(cfg, 0), weight_decay=cfg.weight_decay
    )
    grouped = getattr(cfg, "collision_batches", False)
    codes = evaluate_tokenizer(model, x, tags, cfg.codebook_size)[1] if grouped else None
    order = epoch_order(n, cfg.seed * 100003, codes)
    batches = [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    model.train()

    def run(batch):
        out = model(x[batch], tag_ids[batch])
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        for key, value in out.items():  # the loop reads every loss each step
            if key != "codes":
                float(value.detach())

    return Loop(
        label,
        f"batch {cfg.batch_size}, {cfg.levels} x {cfg.codebook_size}",
        batches,
        run,
        work=len,
        unit="items",
        key=None if supervised else len,
    )


def rqvae_loop(inputs: Inputs) -> Loop:
    return _vae_loop("RQ-VAE", rqvae_tiger(), inputs)


def hidvae_loop(inputs: Inputs) -> Loop:
    return _vae_loop("HiD-VAE", hidvae_beauty_tuned(), inputs)


def lamia_loop(inputs: Inputs) -> Loop:
    """LAMIA (lamia_minilm_small, jobs/train_lamia.py's default): MiniLM palette
    model, one step = sample tasks, tokenize, dual forward, LAMIA loss."""
    cfg = lamia_minilm_small()
    if inputs.tiny:
        cfg = dataclasses.replace(cfg, batch_size=8, train_items=64)
    attrs = item_attributes(pq.read_table(f"{inputs.root}/catalog/items.parquet"), cfg.task_fields)
    n = attrs.num_items
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, attrs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pool = np.random.default_rng(cfg.seed).permutation(n)[: cfg.train_items or n]
    order = np.random.default_rng(cfg.seed * 100003).permutation(pool)
    starts = range(0, len(order) - 1, cfg.batch_size)
    batches = [(i, order[i : i + cfg.batch_size]) for i in starts]
    batches = [b for b in batches if len(b[1]) >= 2]  # the loop's pair rule
    model.train()
    device = torch.device("cpu")

    def run(batch):
        # The loop draws tasks from one generator per epoch; a generator per
        # batch gives the same distribution and lets FLOP counting replay a step.
        start, rows = batch
        rng = np.random.default_rng((cfg.seed, 0, start))
        out = lamia_step(model, model, attrs, rows, cfg, rng, device)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        for value in out.values():
            float(value.detach())

    return Loop(
        "LAMIA",
        f"lamia_minilm_small, batch {cfg.batch_size}",
        batches,
        run,
        work=lambda b: len(b[1]),
        unit="items",
    )


LOOPS: dict[str, Callable[[Inputs], Loop]] = {
    "sasrec": sasrec_loop,
    "tiger": tiger_loop,
    "sidgpt": sidgpt_loop,
    "sidgpt_d128": sidgpt_d128_loop,
    "h2rec": h2rec_loop,
    "lmrec": lmrec_loop,
    # LAMIA's rank, the issue-17 runs' (docs/RESULTS_lmrec.md)
    "lmrec_r128": lambda inputs: lmrec_loop(
        inputs, "LM-Rec LoRA 128", lora_rank=128, lora_alpha=256
    ),
    "rqvae": rqvae_loop,
    "hidvae": hidvae_loop,
    "lamia": lamia_loop,
}
