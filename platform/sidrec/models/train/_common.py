"""Pieces every train loop shares: the data a run loads, this rank's batches,
sharded evaluation (full catalog, head/tail, `exclude_seen/`), MLflow logging
from rank 0, and the epoch loop with valid-metric selection, early stopping,
per-epoch checkpoints and one test evaluation at the end."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sized
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sidrec.data.catalog import load_items, load_split, train_sequences
from sidrec.distributed.train import Reporter, load_state, unwrap
from sidrec.eval.metrics import (
    DEFAULT_KS,
    EXCLUDE_SEEN_PREFIX,
    RankingEvaluator,
    draw_negatives,
    head_items,
    history_mask,
    sampled_prefix,
    sampled_target_ranks,
    target_ranks,
)
from sidrec.models._data import Rows, first_users, full_history_split, length_buckets, split_rows
from sidrec.models.train.config import TrainConfig
from sidrec.progress import Progress

__all__ = [
    "EpochBatches",
    "TrainData",
    "epoch_batches",
    "evaluate_split",
    "fit_select_test",
    "full_catalog_protocols",
    "full_catalog_ranks",
    "load_data",
]

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    num_items: int
    sequences: Any  # Sequences (training portion)
    valid: Any  # SplitData with full histories
    test: Any
    head_mask: Tensor  # [N] bool


def load_data(cfg: TrainConfig) -> TrainData:
    num_items = load_items(cfg.root).num_rows
    seqs = train_sequences(cfg.root)
    valid_file = first_users(load_split(cfg.root, "valid"), cfg.max_users)
    test_file = first_users(load_split(cfg.root, "test"), cfg.max_users)
    limit = seqs.num_users if cfg.max_users is None else min(cfg.max_users, seqs.num_users)
    counts = np.bincount(seqs.items[: seqs.offsets[limit]], minlength=num_items)
    return TrainData(
        num_items=num_items,
        sequences=seqs,
        valid=full_history_split(valid_file, seqs, None),
        test=full_history_split(test_file, seqs, valid_file),
        head_mask=head_items(torch.as_tensor(counts), cfg.head_fraction),
    )


def _pair(idx: Tensor, length: int) -> tuple[Tensor, int]:
    return idx, length


@dataclass(frozen=True)
class EpochBatches:
    """This rank's share of each length-bucketed batch of one epoch, as make(index
    tensor [b], length) (default: the pair itself).

    Sized: the epoch's step count is known before its first step, so the first
    epoch's progress line has a total and an ETA too (`fit_select_test`)."""

    batches: list[np.ndarray]  # every rank's row indices of each batch, in the epoch's order
    lengths: np.ndarray  # [n] each row's length (one per batch: the buckets are exact)
    rank: int
    world: int
    device: torch.device
    make: Callable[[Tensor, int], Any] = _pair

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        if not self.batches:
            return
        mine = [b[self.rank :: self.world] for b in self.batches]
        flat = torch.as_tensor(np.concatenate(mine), device=self.device)  # one copy per epoch
        bounds = np.concatenate([[0], np.cumsum([len(m) for m in mine])])
        for i, b in enumerate(self.batches):
            yield self.make(flat[bounds[i] : bounds[i + 1]], int(self.lengths[b[0]]))

    def map(self, make: Callable[[Tensor, int], Any]) -> EpochBatches:
        """The same batches, each given as make(index tensor, length): still sized."""
        return replace(self, make=make)


def epoch_batches(
    rows: Rows, cfg: TrainConfig, epoch: int, reporter: Reporter, device
) -> EpochBatches:
    """This rank's share of each length-bucketed batch of the epoch: (index tensor, length)."""
    world = reporter.world_size
    rng = np.random.default_rng([cfg.seed, epoch])  # the same batches on every rank
    batches = length_buckets(rows.lengths, cfg.batch_size, rng, min_size=world)
    return EpochBatches(batches, rows.lengths, reporter.rank, world, device)


def evaluate_split(
    net: torch.nn.Module,
    split,
    max_history: int,
    rank_batch: Callable,
    data: TrainData,
    not_found: dict[str, int | None],
    cfg: TrainConfig,
    reporter: Reporter,
) -> dict[str, float]:
    """Metrics (overall, head/, tail/) of one split under each protocol rank_batch ranks.

    rank_batch(history, users, targets, full_histories) -> {prefix: ranks [b]},
    one entry per protocol (`""`, `exclude_seen/`, `sampled100/`); not_found:
    {prefix: the "not found" rank}, None = N (full-catalog scores), K for a
    generated top-K, num_negatives + 1 for the sampled protocol.
    Each rank ranks its share of the users (padding-free length buckets); the
    ranks are gathered so every rank computes the same metrics.
    """
    device = reporter.device
    rows = split_rows(split, max_history)
    mine = np.arange(reporter.rank, len(rows), reporter.world_size)
    prefixes = list(not_found)
    ranks: dict[str, list[Tensor]] = {p: [] for p in prefixes}
    targets = []
    was_training = net.training
    net.eval()
    progress = Progress("evaluation", len(mine), "users", reporter.rank == 0)
    with torch.no_grad(), progress:
        for idx in length_buckets(rows.lengths[mine], cfg.eval_batch_size):
            progress.update(len(idx))
            sel = mine[idx]
            length = int(rows.lengths[sel[0]])
            hist = torch.as_tensor(rows.history[sel, -length:], device=device)
            users = torch.as_tensor(rows.users[sel], device=device)
            tgt = torch.as_tensor(rows.targets[sel], device=device)
            full = [split.history(i) for i in sel]
            batch = rank_batch(hist, users, tgt, full)
            for p in prefixes:
                ranks[p].append(batch[p].cpu())
            targets.append(tgt.cpu())
    net.train(was_training)
    columns = [ranks[p] for p in prefixes] + [targets]
    gathered = _gather([torch.cat(x) if x else torch.zeros(0, dtype=torch.long) for x in columns])
    *per_prefix, t = (torch.cat(parts) for parts in zip(*gathered, strict=True))
    metrics = {}
    for prefix, r in zip(prefixes, per_prefix, strict=True):
        ev = RankingEvaluator(
            data.num_items, DEFAULT_KS, data.head_mask, prefix, not_found=not_found[prefix]
        )
        ev.add(r, t)
        metrics.update(ev.compute())
    return metrics


def full_catalog_protocols(cfg: TrainConfig) -> dict[str, int | None]:
    """The protocols a full-catalog scorer reports, with their not-found ranks:
    primary and `exclude_seen/`, plus `sampled{n}/` when cfg.sampled_negatives is set."""
    out: dict[str, int | None] = {"": None, EXCLUDE_SEEN_PREFIX: None}
    if cfg.sampled_negatives:
        out[sampled_prefix(cfg.sampled_negatives)] = cfg.sampled_negatives + 1
    return out


def full_catalog_ranks(
    scores: Tensor,
    targets: Tensor,
    full: list[np.ndarray],
    cfg: TrainConfig,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """{prefix: ranks [b]} of `full_catalog_protocols` from scores: [b x N].

    Sampled protocol (as LLM-ESR): the target against cfg.sampled_negatives
    items drawn uniformly among those the user never interacted with
    (generator: a CPU generator, so the draw does not depend on the device).
    """
    seen = history_mask(full, scores.shape[1], device=scores.device)
    out = {
        "": target_ranks(scores, targets),
        EXCLUDE_SEEN_PREFIX: target_ranks(scores, targets, exclude=seen),
    }
    if cfg.sampled_negatives:
        n = cfg.sampled_negatives
        negatives = draw_negatives(targets, scores.shape[1], n, generator, exclude=seen)
        out[sampled_prefix(n)] = sampled_target_ranks(scores, targets, n, negatives=negatives)
    return out


def _gather(tensors: list[Tensor]) -> list[list[Tensor]]:
    """[per rank: tensors] from every rank (just this one's without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [tensors]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, tensors)
    return out


def _out_of_time(cfg: TrainConfig, elapsed_s: float, steps: int) -> bool:
    """The time budget is spent (checked every 10 steps: the ranks must agree, and
    agreeing is a collective)."""
    if cfg.time_budget_s is None or steps % 10:
        return False
    return _agree(elapsed_s >= cfg.time_budget_s)


def _agree(flag: bool) -> bool:
    """True on every rank if it is True on any (a stopping decision all ranks share)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, bool(flag))
    return any(out)


@dataclass
class _Selection:
    """Early-stopping state, saved in every checkpoint."""

    best: float = -math.inf
    best_epoch: int = -1
    bad_evals: int = 0
    stopped: bool = False
    elapsed_s: float = 0.0  # training + evaluation wall time so far, across restarts


def lr_factor(cfg: TrainConfig, step: int, epoch: int) -> float:
    """The multiplier of cfg.lr at optimizer step `step` (0-based) of epoch
    `epoch`: linear warm-up over cfg.warmup_steps, times the schedule. Cosine
    moves once an epoch, from 1 at epoch 0 to 0 after the last of cfg.epochs."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return warm


def fit_select_test(
    kind: str,
    model_config: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    reporter: Reporter,
    train_batches: Callable[[int], Any],
    loss_fn: Callable[[Any], Tensor],
    evaluate: Callable[[str], dict[str, float]],
    new_phase: Callable[[int, dict[str, float]], bool] | None = None,
) -> None:
    """Epochs with valid-NDCG@10 selection and early stopping, then test once.

    train_batches(epoch): the epoch's batches, each handed to loss_fn; an
    EpochBatches (sized) gives even the first epoch's progress line its ETA.
    new_phase(epoch, valid_metrics): called after each valid evaluation; True =
    a new training phase starts (LM-Rec's L_rip-only phase 2), which restarts
    the early-stopping count (the best weights so far stay the best)."""
    net = unwrap(model)
    at = {"epoch": 0}  # the epoch being trained, read by the lr schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, at["epoch"])
    )
    sel, best_state, start = _Selection(), None, 0
    state = load_state(reporter.latest_checkpoint())
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sel, best_state, start = (
            _Selection(**state["selection"]),
            state["best_model"],
            state["epoch"] + 1,
        )
        log.info(
            "resuming %s at epoch %d (best valid %s %.4f at epoch %d)",
            kind,
            start,
            cfg.select_metric,
            sel.best,
            sel.best_epoch,
        )
    # bf16 autocast on any device (on CPU it runs, so the flag is never dead code,
    # but fp32 is faster on CPUs without AMX: docs/RESULTS_recommender.md).
    autocast = (
        torch.autocast(reporter.device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    )

    def checkpoint(epoch: int, extra: dict[str, Any] | None = None):
        def save(folder):
            torch.save(
                {
                    "kind": kind,
                    "model_config": model_config,
                    "train_config": cfg.to_dict(),
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "selection": asdict(sel),
                    "best_model": best_state,
                    **(extra or {}),
                },
                folder / "state.pt",
            )

        return save

    last = start - 1  # the last epoch trained
    expected_steps = None
    for epoch in range(start, cfg.epochs):
        if sel.stopped:
            break
        at["epoch"] = epoch
        t0 = time.perf_counter()
        model.train()
        total, steps = torch.zeros((), device=reporter.device), 0
        batches = train_batches(epoch)
        # A sized epoch (EpochBatches) says its step count up front: every epoch's line
        # gets an ETA. Otherwise the count is known once an epoch has run.
        expected = len(batches) if isinstance(batches, Sized) else expected_steps
        progress = Progress(f"{kind} epoch {epoch}", expected, "steps", reporter.rank == 0)
        for batch in batches:
            with autocast:
                loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.detach()
            steps += 1
            # A callable: the loss read is a host sync, made only when shown.
            progress.update(loss=lambda total=total, steps=steps: float(total) / steps)
            if _out_of_time(cfg, sel.elapsed_s + time.perf_counter() - t0, steps):
                break  # mid-epoch: a budget must bound the first epoch too
        progress.close()
        expected_steps = steps
        train_s = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "start_epoch": start,
            "loss": float(total) / max(steps, 1),
            "steps": steps,
            "epoch_seconds": train_s,
        }
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            t1 = time.perf_counter()
            valid = evaluate("valid")
            metrics["eval_seconds"] = time.perf_counter() - t1
            metrics.update({f"valid/{k}": v for k, v in valid.items()})
            if valid[cfg.select_metric] > sel.best:
                sel.best, sel.best_epoch, sel.bad_evals = valid[cfg.select_metric], epoch, 0
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in net.state_dict().items()}
                )
            else:
                sel.bad_evals += 1
            if new_phase is not None and new_phase(epoch, valid):
                sel.bad_evals = 0
        sel.elapsed_s += time.perf_counter() - t0
        over_budget = cfg.time_budget_s is not None and sel.elapsed_s >= cfg.time_budget_s
        sel.stopped = _agree(sel.bad_evals >= cfg.patience or over_budget)
        metrics.update({"best_epoch": sel.best_epoch, f"best_valid/{cfg.select_metric}": sel.best})
        reporter.report(metrics, save=checkpoint(epoch))
        last = epoch

    # Test, once, with the weights of the best valid epoch.
    if best_state is None:  # no evaluation ran (epochs=0): the current weights
        best_state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    test = evaluate("test")
    final = {
        "epoch": last,
        "start_epoch": start,
        "best_epoch": sel.best_epoch,
        "epochs_run": last + 1,
        "elapsed_seconds": sel.elapsed_s,
        f"best_valid/{cfg.select_metric}": sel.best,
        **{f"test/{k}": v for k, v in test.items()},
    }
    reporter.report(final, save=checkpoint(last, {"done": True, "test_metrics": test}))
