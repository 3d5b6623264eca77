"""The tokenizer train loops, in the `train_loop(config, reporter)` shape of
sidrec.distributed: run them with `fit(loop, config, RunSpec(...))`, in this
process (num_workers=0) or on Ray Train workers with DDP.

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

Codebooks are k-means-initialized before the model is wrapped in DDP, so DDP
copies rank 0's to the others; re-seeding is deterministic and then broadcast.

`rqkmeans_loop` fits one level per "epoch" and checkpoints after each, so a
long k-means over a big catalog resumes at the level it stopped at.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidrec.data import DataError
from sidrec.data.embeddings import load_embeddings
from sidrec.distributed import load_state
from sidrec.eval.sids import sid_table_metrics
from sidrec.progress import Progress
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

STATE_FILE = "state.pt"
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


def _restore(reporter) -> dict[str, Any] | None:
    """The latest checkpoint's state on every rank, read from disk by rank 0 only.

    Ray's Checkpoint.to_directory() lets a second process on the node re-download
    into the folder another is reading (observed: "PytorchStreamReader failed
    reading file" on restart with 2 workers); one reader plus a broadcast avoids it.
    """
    import torch.distributed as dist

    if reporter.world_size > 1 and dist.is_available() and dist.is_initialized():
        box = [load_state(reporter.latest_checkpoint(), STATE_FILE) if reporter.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return load_state(reporter.latest_checkpoint(), STATE_FILE)


def _check_same_config(state: dict[str, Any], cfg: Any) -> None:
    """A checkpoint resumes only the run that wrote it; more epochs is fine."""
    saved, now = dict(state["config"]), asdict(cfg)
    saved.pop("epochs", None)
    now.pop("epochs", None)
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if state.get("learner") != cfg.learner or changed:
        raise ValueError(
            f"the checkpoint to resume was trained with another config (fields {changed}, "
            f"learner {state.get('learner')!r}): give this run another name"
        )


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
    state = _restore(reporter)
    start = 0
    if state is not None:
        if state["input_dim"] != dim:
            raise DataError(
                f"embedding dimensions disagree with the checkpoint "
                f"({dim} vs {state['input_dim']}): start a new run",
                file=config["embeddings"],
                field="embedding",
            )
        _check_same_config(state, cfg)
        model.load_state_dict(state["model"])
        start = state["epoch"] + 1
    else:
        model.init_codebooks(x[_first_batch(n, cfg).to(device)], seed=cfg.seed)
    # DDP wraps `model`; it stays the module itself for evaluation and saving.
    ddp = reporter.prepare_model(model)
    optimizer = _OPTIMIZERS[cfg.optimizer](
        ddp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    world, rank = reporter.world_size, reporter.rank
    per_rank = max(1, cfg.batch_size // world)
    if start >= cfg.epochs and state is not None:
        # Trained already (a re-run after the outputs were lost): hand the
        # last checkpoint back as this run's result.
        reporter.report(
            state["metrics"], save=lambda folder: torch.save(state, folder / STATE_FILE)
        )
        return

    grouped = getattr(cfg, "collision_batches", False)
    codes = None
    if grouped:
        codes = (
            state["codes"]
            if state is not None
            else evaluate_tokenizer(model, x, tags, cfg.codebook_size)[1]
        )
    for epoch in range(start, cfg.epochs):
        began = time.perf_counter()
        ddp.train()
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        order = epoch_order(n, cfg.seed * 100003 + epoch, codes if grouped else None)[
            : n - n % world
        ].to(device)
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        total_steps = -(-len(order) // (per_rank * world))
        progress = Progress(f"{cfg.learner} epoch {epoch}", total_steps, "steps", rank == 0)
        for step_start in range(0, len(order), per_rank * world):
            batch = order[step_start : step_start + per_rank * world].view(world, -1)[rank]
            out = ddp(x[batch], tag_ids[batch])
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            for key, value in out.items():
                if key != "codes":
                    sums[key] += float(value.detach())
            steps += 1
            progress.update(**{k: v / steps for k, v in sums.items()})
        progress.close()
        train_seconds = time.perf_counter() - began

        reseeded = 0
        if cfg.reseed_dead_codes and epoch < cfg.epochs - 1:
            generator = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
            reseeded = sum(model.reseed_dead_codes(x, generator))
            if world > 1 and torch.distributed.is_initialized():
                torch.distributed.broadcast(model.quantizer.codebooks.data, src=0)
        metrics, codes = evaluate_tokenizer(model, x, tags, cfg.codebook_size)
        metrics.update({f"train/{k}": v / max(steps, 1) for k, v in sums.items()})
        metrics.update(
            epoch=epoch,
            start_epoch=start,
            reseeded_codes=reseeded,
            epoch_seconds=train_seconds,
            eval_seconds=time.perf_counter() - began - train_seconds,
        )

        def save(folder: Path, epoch=epoch, metrics=metrics, codes=codes) -> None:
            torch.save(
                {
                    **_state_for(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "input_dim": dim,
                    "tag_sizes": tags.sizes if (tags is not None and supervised) else None,
                    "codes": codes,
                    "metrics": metrics,
                },
                folder / STATE_FILE,
            )

        reporter.report(metrics, save=save)


def rqkmeans_loop(config: dict[str, Any], reporter) -> None:
    """Residual k-means, one level per report. Every rank computes the same
    (seeded) result: the fit is not data-parallel, so one worker is enough."""
    cfg = config["tokenizer"]
    x = load_embeddings(config["embeddings"])
    n, dim = x.shape
    cfg.validate(n)
    tags = load_tags(config.get("tags"), n, cfg.levels, required=False)
    state = _restore(reporter)
    centroids: list[np.ndarray] = []
    if state is not None:
        if state["input_dim"] != dim:
            raise DataError(
                f"embedding dimensions disagree with the checkpoint ({dim} vs {state['input_dim']})",
                file=config["embeddings"],
                field="embedding",
            )
        _check_same_config(state, cfg)
        centroids = list(state["centroids"])
    start = len(centroids)
    if start >= cfg.levels and state is not None:
        reporter.report(
            state["metrics"], save=lambda folder: torch.save(state, folder / STATE_FILE)
        )
        return
    for level in range(start, cfg.levels):
        began = time.perf_counter()
        # Fit on the level's sample (all rows up to fit_sample), assign every row.
        rows = fit_rows(n, cfg, level)
        _, residual = rqkmeans_codes(x if rows is None else x[rows], centroids)
        centroids.append(fit_level(residual, cfg, level))
        del residual
        fit_seconds = time.perf_counter() - began
        codes, squared = rqkmeans_assign(x, centroids)
        metrics = tokenizer_metrics(codes, cfg.codebook_size, tags)
        metrics.update(
            epoch=level,
            start_epoch=start,
            recon_loss=float(squared.mean()),
            epoch_seconds=fit_seconds,
        )

        def save(folder: Path, level=level, metrics=metrics, codes=codes) -> None:
            torch.save(
                {
                    **_state_for(config),
                    "centroids": [c.copy() for c in centroids[: level + 1]],
                    "epoch": level,
                    "input_dim": dim,
                    "tag_sizes": None,
                    "codes": codes,
                    "metrics": metrics,
                },
                folder / STATE_FILE,
            )

        reporter.report(metrics, save=save)
