"""Pieces every train loop shares: the data a run loads, this rank's batches,
sharded evaluation (full catalog, head/tail, `exclude_seen/`), MLflow logging
from rank 0, and `fit_select_test`: a recommender's epoch on sidrec.engine's
loop (valid-metric selection, early stopping, per-epoch checkpoints and one
test evaluation at the end)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sidrec.data.catalog import load_items, load_split, train_sequences
from sidrec.distributed.train import Reporter, unwrap
from sidrec.engine import EpochPlan, Selection, resume_state, run_epochs
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


class _RecommenderTask:
    """A recommender's epoch for sidrec.engine: the loop's batches and loss, its
    valid/test evaluation, and the weights and train config in each checkpoint."""

    def __init__(self, net, cfg: TrainConfig, train_batches, loss_fn, evaluate, loop_state=None):
        self.net, self.cfg = net, cfg
        self.batches, self.loss_fn, self._evaluate = train_batches, loss_fn, evaluate
        self.loop_state = loop_state

    def step(self, batch) -> dict[str, Tensor]:
        return {"loss": self.loss_fn(batch)}

    def evaluate(self, epoch: int, split: str) -> dict[str, float]:
        return self._evaluate(split)

    def state_dict(self) -> dict[str, Any]:
        state = {"train_config": self.cfg.to_dict(), "model": self.net.state_dict()}
        if self.loop_state is not None:
            state["loop_state"] = dict(self.loop_state)
        return state


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
    loop_state: dict[str, Any] | None = None,
) -> None:
    """Epochs with valid-NDCG@10 selection and early stopping, then test once
    (`sidrec.engine.run_epochs` with a `Selection`).

    train_batches(epoch): the epoch's batches, each handed to loss_fn; an
    EpochBatches (sized) gives even the first epoch's progress line its ETA.

    A checkpoint resumes only the same kind and architecture (`model_config`);
    the train config may change (more epochs, another learning rate).
    new_phase(epoch, valid_metrics): called after each valid evaluation; True =
    a new training phase starts (LM-Rec's L_rip-only phase 2), which restarts
    the early-stopping count (the best weights so far stay the best).
    loop_state: the loop's own mutable state (LM-Rec's phase), saved in every
    checkpoint and updated in place from the resumed one."""
    net = unwrap(model)
    at = {"epoch": 0}  # the epoch being trained, read by the lr schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, at["epoch"])
    )
    identity = {"kind": kind, "model_config": model_config}
    state = resume_state(reporter, identity)
    if state is not None:
        net.load_state_dict(state["model"])
        if loop_state is not None:
            loop_state.update(state.get("loop_state", {}))
    plan = EpochPlan(
        kind=kind,
        epochs=cfg.epochs,
        identity=identity,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        grad_clip=cfg.grad_clip,
        # bf16 autocast on any device (on CPU it runs, so the flag is never dead code,
        # but fp32 is faster on CPUs without AMX: docs/RESULTS_recommender.md).
        bf16=cfg.bf16,
        time_budget_s=cfg.time_budget_s,
        eval_every=cfg.eval_every,
        selection=Selection(cfg.select_metric, cfg.patience, new_phase),
        train_prefix="",  # the recommenders report their mean loss as `loss`
    )

    def batches(epoch: int):
        at["epoch"] = epoch  # the lr schedule's epoch, before the epoch's first step
        return train_batches(epoch)

    task = _RecommenderTask(net, cfg, batches, loss_fn, evaluate, loop_state)
    run_epochs(task, plan, reporter, state)
