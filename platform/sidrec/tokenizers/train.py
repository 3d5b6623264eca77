"""The tokenizer train loops, in the `train_loop(config, reporter)` shape of
sidrec.distributed, each an epoch task on sidrec.engine's loop (resume, config
check, checkpoints, progress, reports): run them with
`fit(loop, config, RunSpec(...))`, in this process (num_workers=0) or on Ray
Train workers with DDP.

    config = {
        "tokenizer": rqvae_tiger(),             # or hidvae_beauty(), rqkmeans_default()
        "embeddings": ".../embeddings/x.parquet",
        "tags": ".../catalog/items.parquet",    # or a tags parquet; None = no tags
    }
    fit(train_loop, config, RunSpec(name="rqvae-x", storage_path=".../train"),
        reporters=[MlflowReporter(uri, run_id)])   # optional: per-epoch metrics to MLflow

`train_loop` (RQ-VAE, HiD-VAE), one epoch:
1. every rank takes its contiguous slice of each global batch of one seeded
   permutation of the catalog (the same on every rank; `epoch_order`, which
   can keep the items of a colliding SID together), batch_size / world_size
   items a step, so all ranks run the same number of steps and DDP never
   waits on a missing one; batch_size >= N is full-batch;
2. the whole catalog is embedding-sized (N x d floats), so it sits on the
   reporter's device and a batch is an index, not a data loader;
3. at the end, unused codewords are re-seeded (not after the last epoch, so the
   final codes come from trained weights), the catalog is tokenized and
   measured (sid_table_metrics + recon, tag accuracy and purity per level),
   and a checkpoint holding weights, optimizer, codes and metrics is saved.
   Step outputs are averaged over the epoch as `train/<key>`.

Codebooks are k-means-initialized before the model is wrapped in DDP, so DDP
copies rank 0's to the others; re-seeding is deterministic and then broadcast.

`rqkmeans_loop` fits one level per "epoch" and checkpoints after each, so a
long k-means over a big catalog resumes at the level it stopped at.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidrec.data import DataError
from sidrec.data.embeddings import load_embeddings
from sidrec.engine import STATE_FILE, EpochPlan, resume_state, run_epochs
from sidrec.eval.sids import sid_table_metrics
from sidrec.tokenizers.rqkmeans import fit_level, fit_rows, rqkmeans_assign, rqkmeans_codes
from sidrec.tokenizers.tags import (
    TagSet,
    majority_tags,
    read_tag_paths,
    tag_centroids,
    tags_from_paths,
)

__all__ = [
    "train_loop",
    "rqkmeans_loop",
    "epoch_order",
    "epoch_lr",
    "load_tags",
    "evaluate_tokenizer",
    "tokenizer_metrics",
    "STATE_FILE",
]

log = logging.getLogger(__name__)

_EVAL_BATCH = 8192  # items tokenized at once when measuring the catalog
_OPTIMIZERS = {"adagrad": torch.optim.Adagrad, "adamw": torch.optim.AdamW}


def load_tags(
    path: str | Path | None, num_items: int, levels: int, required: bool
) -> TagSet | None:
    """Tags for `levels` levels from a catalog items parquet or a tags parquet.

    required (HiD-VAE): every one of the levels must have tagged items, else a
    DataError naming the field. Otherwise (tag purity for the other learners)
    as many levels as the paths have, up to `levels`, or None without tags.
    """
    if path is None:
        if required:
            raise DataError("HiD-VAE needs tags: pass a catalog or tags file", field="categories")
        return None
    paths = read_tag_paths(path, num_items)
    if not required:
        depth = max((len(p) for p in paths if p), default=0)
        levels = min(levels, depth)
        if levels == 0:
            return None
    tags = tags_from_paths(paths, levels, source=str(path))
    missing = [round(1 - c, 3) for c in tags.coverage()]
    if required and any(missing):
        log.info("items without a tag, per level (masked out of the tag losses): %s", missing)
    return tags


def _state_for(config: dict[str, Any]) -> dict[str, Any]:
    """What every checkpoint carries besides weights: enough to rebuild the model."""
    cfg = config["tokenizer"]
    return {"learner": cfg.learner, "config": asdict(cfg)}


def tokenizer_metrics(
    codes: np.ndarray, codebook_size: int, tags: TagSet | None
) -> dict[str, float]:
    """SID-table metrics (eval/sids.py) plus tag purity per level."""
    metrics = dict(sid_table_metrics(codes, codebook_size))
    if tags is not None:
        _, purity = majority_tags(codes, tags)
        metrics.update({f"tag_purity/level_{i}": p for i, p in enumerate(purity)})
    return metrics


@torch.no_grad()
def evaluate_tokenizer(
    model: torch.nn.Module, x: torch.Tensor, tags: TagSet | None, codebook_size: int
) -> tuple[dict[str, float], np.ndarray]:
    """Tokenize the whole catalog x [N x d]: (metrics, codes [N x L])."""
    was_training = model.training
    model.eval()
    codes, errors, predicted = [], [], []
    for start in range(0, x.shape[0], _EVAL_BATCH):
        chunk = x[start : start + _EVAL_BATCH]
        out = model.tokenize(chunk)
        codes.append(out["codes"].cpu())
        errors.append(out["recon_error"].cpu())
        if "tags" in out:
            predicted.append(out["tags"].cpu())
    model.train(was_training)
    codes_np = torch.cat(codes).numpy()
    metrics = tokenizer_metrics(codes_np, codebook_size, tags)
    metrics["recon_loss"] = float(torch.cat(errors).mean())
    if predicted and tags is not None:
        guess = torch.cat(predicted).numpy()
        for level in range(guess.shape[1]):
            truth = tags.ids[:, level]
            valid = truth >= 0
            metrics[f"tag_acc/level_{level}"] = float((guess[valid, level] == truth[valid]).mean())
    return metrics, codes_np


def epoch_order(n: int, seed: int, codes: np.ndarray | None = None) -> torch.Tensor:
    """One epoch's item order: a seeded shuffle, or, given the catalog's codes
    [n x L], a shuffle of SID groups in which the items of one full SID are
    adjacent (and so share a batch unless a batch boundary splits the group).

    The uniqueness loss (Eq. 7) only sees colliding pairs inside a batch; with
    a plain shuffle a pair meets about batch/n of the epochs.
    """
    generator = torch.Generator().manual_seed(seed)
    if codes is None:
        return torch.randperm(n, generator=generator)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = torch.as_tensor(group.reshape(-1))
    group_rank = torch.randperm(int(group.max()) + 1, generator=generator)[group]
    within = torch.randperm(n, generator=generator)
    # sort by (group's random rank, random tie-break): groups stay contiguous
    return torch.argsort(group_rank * n + torch.argsort(within), stable=True)


def epoch_lr(cfg: Any, epoch: int) -> float:
    """The learning rate of `epoch`: cfg.lr, or a half-cosine from cfg.lr at
    epoch 0 towards 0 after the last epoch (a function of the epoch alone, so
    a resumed run continues the same curve)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def _first_batch(n: int, cfg: Any) -> torch.Tensor:
    """Indices of the items that initialize the codebooks: the first batch of
    epoch 0, grown to K items when the batch is smaller than the codebook."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    return order[: max(cfg.batch_size, cfg.codebook_size)]


def _identity(cfg: Any) -> dict[str, Any]:
    """What every checkpoint carries to rebuild the model, and a resume must match."""
    return {"learner": cfg.learner, "config": asdict(cfg)}


def _check_width(state: dict[str, Any] | None, dim: int, path: str) -> None:
    if state is not None and state["input_dim"] != dim:
        raise DataError(
            f"embedding dimensions disagree with the checkpoint "
            f"({dim} vs {state['input_dim']}): start a new run",
            file=path,
            field="embedding",
        )


class _VaeTask:
    """An RQ-VAE or HiD-VAE epoch for sidrec.engine (see the module docstring)."""

    def __init__(self, cfg, model, ddp, x, tag_ids, tags, reporter, codes, supervised: bool):
        self.cfg, self.model, self.ddp = cfg, model, ddp
        self.x, self.tag_ids, self.tags = x, tag_ids, tags
        self.world, self.rank = reporter.world_size, reporter.rank
        self.codes, self.supervised = codes, supervised

    def batches(self, epoch: int) -> list[torch.Tensor]:
        n, world = self.x.shape[0], self.world
        grouped = getattr(self.cfg, "collision_batches", False)
        order = epoch_order(n, self.cfg.seed * 100003 + epoch, self.codes if grouped else None)
        order = order[: n - n % world].to(self.x.device)
        size = max(1, self.cfg.batch_size // world) * world
        # Every rank its contiguous slice of each global batch: the same step count.
        return [order[s : s + size].view(world, -1)[self.rank] for s in range(0, len(order), size)]

    def step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.ddp(self.x[batch], self.tag_ids[batch])
        return {k: v for k, v in out.items() if k != "codes"}

    def evaluate(self, epoch: int, split: str) -> dict[str, Any]:
        cfg, model, reseeded = self.cfg, self.model, 0
        # Not after the last epoch: the final codes come from trained weights.
        if cfg.reseed_dead_codes and epoch < cfg.epochs - 1:
            generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
            reseeded = sum(model.reseed_dead_codes(self.x, generator))
            if self.world > 1 and torch.distributed.is_initialized():
                torch.distributed.broadcast(model.quantizer.codebooks.data, src=0)
        metrics, self.codes = evaluate_tokenizer(model, self.x, self.tags, cfg.codebook_size)
        return {**metrics, "reseeded_codes": reseeded}

    def state_dict(self) -> dict[str, Any]:
        tags = self.tags
        return {
            "model": self.model.state_dict(),
            "input_dim": self.x.shape[1],
            "tag_sizes": tags.sizes if (tags is not None and self.supervised) else None,
            "codes": self.codes,
        }


def train_loop(config: dict[str, Any], reporter) -> None:
    """Train an RQ-VAE or HiD-VAE (`config["tokenizer"]`) on the embeddings."""
    cfg = config["tokenizer"]
    # -- data: the whole catalog, on the device --------------------------
    x_np = load_embeddings(config["embeddings"])
    n, dim = x_np.shape
    cfg.validate(n)
    supervised = hasattr(cfg, "supervised_levels")
    tags = load_tags(
        config.get("tags"),
        n,
        cfg.supervised_levels if supervised else cfg.levels,
        required=supervised,
    )
    device = reporter.device
    x = torch.as_tensor(x_np, device=device)
    tag_ids = torch.as_tensor(
        tags.ids if tags is not None else np.zeros((n, 0), dtype=np.int64), device=device
    )

    # -- model: fresh (k-means init) or from the latest checkpoint -------
    torch.manual_seed(cfg.seed)
    model = cfg.build(dim, tags.sizes if tags is not None else None)
    if supervised:
        model.set_tag_embeddings(tag_centroids(x_np, tags))
    model.to(device)
    identity = _identity(cfg)
    state = resume_state(reporter, identity)
    _check_width(state, dim, config["embeddings"])
    if state is not None:
        model.load_state_dict(state["model"])
    else:
        model.init_codebooks(x[_first_batch(n, cfg).to(device)], seed=cfg.seed)
    # DDP wraps `model`; it stays the module itself for evaluation and saving.
    ddp = reporter.prepare_model(model)
    optimizer = _OPTIMIZERS[cfg.optimizer](
        ddp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    codes = None
    if getattr(cfg, "collision_batches", False):
        codes = (
            state["codes"]
            if state is not None
            else evaluate_tokenizer(model, x, tags, cfg.codebook_size)[1]
        )
    task = _VaeTask(cfg, model, ddp, x, tag_ids, tags, reporter, codes, supervised)
    plan = EpochPlan(
        kind=cfg.learner,
        epochs=cfg.epochs,
        identity=identity,
        model=ddp,
        optimizer=optimizer,
        epoch_lr=lambda epoch: epoch_lr(cfg, epoch),
    )
    run_epochs(task, plan, reporter, state)


class _RQKMeansTask:
    """One residual k-means level per "epoch": the step fits it, evaluate measures it."""

    def __init__(self, cfg, x: np.ndarray, tags: TagSet | None, centroids: list[np.ndarray]):
        self.cfg, self.x, self.tags, self.centroids = cfg, x, tags, centroids
        self.codes: np.ndarray | None = None

    def batches(self, level: int) -> list[int]:
        return [level]

    def step(self, level: int) -> dict[str, float]:
        # Fit on the level's sample (all rows up to fit_sample); evaluate assigns every row.
        rows = fit_rows(len(self.x), self.cfg, level)
        _, residual = rqkmeans_codes(self.x if rows is None else self.x[rows], self.centroids)
        self.centroids.append(fit_level(residual, self.cfg, level))
        return {}

    def evaluate(self, level: int, split: str) -> dict[str, Any]:
        self.codes, squared = rqkmeans_assign(self.x, self.centroids)  # in row chunks
        metrics = tokenizer_metrics(self.codes, self.cfg.codebook_size, self.tags)
        metrics["recon_loss"] = float(squared.mean())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "centroids": [c.copy() for c in self.centroids],
            "input_dim": self.x.shape[1],
            "tag_sizes": None,
            "codes": self.codes,
        }


def rqkmeans_loop(config: dict[str, Any], reporter) -> None:
    """Residual k-means, one level per report. Every rank computes the same
    (seeded) result: the fit is not data-parallel, so one worker is enough."""
    cfg = config["tokenizer"]
    x = load_embeddings(config["embeddings"])
    n, dim = x.shape
    cfg.validate(n)
    tags = load_tags(config.get("tags"), n, cfg.levels, required=False)
    identity = _identity(cfg)
    state = resume_state(reporter, identity)
    _check_width(state, dim, config["embeddings"])
    centroids = list(state["centroids"]) if state is not None else []
    task = _RQKMeansTask(cfg, x, tags, centroids)
    plan = EpochPlan(kind=cfg.learner, epochs=cfg.levels, identity=identity)
    run_epochs(task, plan, reporter, state)
