"""Train loops for SASRec and TIGER: `train_loop(config, reporter)`, runnable by
`sidrec.distributed.fit` in one process (no Ray) or on N Ray Train workers.

What every loop does (issue 5):
- padding-free, length-bucketed batches (`_data.py`) built from tensors that
  live on the device; the global batch is split over the workers;
- optional bf16 autocast and torch.compile (`bf16`, `compile`: GPU knobs;
  both off by default, and bf16 is ignored on CPU, where it is slower);
- model selection on the *valid* split only: NDCG@10 every `eval_every`
  epochs, early stopping after `patience` evaluations without a gain, or when
  the time budget is spent; the *test* split is evaluated once, at the end,
  with the best weights;
- metrics from `sidrec.eval` (full catalog, head/tail, `exclude_seen/`),
  evaluation sharded over the workers and the ranks gathered, so every
  worker sees the same numbers and takes the same stopping decision;
- a checkpoint per epoch holding the model, the optimizer, the selection
  state and the best weights, so a restarted worker group resumes where it
  was (`FailureConfig`), and the last checkpoint is what the job bundles;
- per-epoch and test metrics logged to MLflow from rank 0
  (`mlflow_uri` + `mlflow_run_id`, set by the job).

    fit(sasrec_train_loop, {"root": ..., "preset": "sasrec_beauty", "loss": "ce"}, RunSpec(...))
    fit(tiger_train_loop, {"root": ..., "sids": ".../sids/x.parquet", "preset": "tiger_small"}, ...)
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sidrec.data.catalog import load_items, load_split, train_sequences
from sidrec.data.sids import read_sid_table
from sidrec.decoding import SidTrie, constrained_beam_search
from sidrec.distributed.train import Reporter, load_state, unwrap
from sidrec.eval.metrics import (
    DEFAULT_KS,
    EXCLUDE_SEEN_PREFIX,
    RankingEvaluator,
    head_items,
    history_mask,
    ranks_from_topk,
    target_ranks,
)
from sidrec.models._data import (
    Rows,
    first_users,
    full_history_split,
    length_buckets,
    sequence_rows,
    split_rows,
)
from sidrec.models._topk import drop_seen
from sidrec.models.sasrec import SASRec, sasrec, sasrec_beauty
from sidrec.models.tiger import Tiger, hidvae_recommender, tiger, tiger_small

__all__ = [
    "SASREC_PRESETS",
    "SASREC_RECIPE",
    "TIGER_PRESETS",
    "TIGER_RECIPE",
    "TrainConfig",
    "sasrec_train_loop",
    "tiger_train_loop",
]

log = logging.getLogger(__name__)

SASREC_PRESETS = {"sasrec_beauty": sasrec_beauty}
TIGER_PRESETS = {"tiger_small": tiger_small, "hidvae_recommender": hidvae_recommender}


@dataclass
class TrainConfig:
    """One training run. Defaults are SASRec's Beauty recipe; `TIGER_RECIPE` overrides."""

    root: str  # artifact root holding catalog/ and splits/ (jobs/ingest.py)
    # Architecture: a preset builder by name, or `arch` = every argument of the
    # generic builder (`sasrec(...)`, `tiger(...)`) written out (tests, sweeps).
    preset: str = "sasrec_beauty"
    arch: dict[str, Any] | None = None
    loss: str = "ce"  # SASRec only: "ce" full softmax, "bce" one negative
    sids: str | None = None  # TIGER: the SID table (sids/<run>.parquet)
    # TIGER: [V x text_dim] tag-path embeddings (torch.save'd tensor) for
    # hierarchy-aware SID embeddings; None = plain TIGER embeddings.
    tag_text: str | None = None
    hierarchy_aware: bool = False
    epochs: int = 400  # upper bound; early stopping usually ends the run
    batch_size: int = 256  # global: split over the workers
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warmup, then constant
    grad_clip: float | None = None
    # Early stopping on valid NDCG@10, counted in evaluations (not epochs).
    patience: int = 20
    eval_every: int = 1
    select_metric: str = "ndcg@10"
    eval_batch_size: int = 512
    beam_width: int = 20  # TIGER: beam >= the largest cutoff (20)
    time_budget_s: float | None = None  # stop training after this much wall time
    max_users: int | None = None  # only users 0..max_users-1 (tests, smoke runs)
    head_fraction: float = 0.2  # head = the 20% most interacted items (DESIGN.md)
    seed: int = 0
    bf16: bool = False  # autocast matmuls to bf16 on GPU
    compile: bool = False  # torch.compile the training step's model
    mlflow_uri: str | None = None
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}; known: {sorted(known)}")
        cfg = cls(**config)
        if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.eval_every < 1 or cfg.patience < 1:
            raise ValueError("batch_size, eval_every and patience must be >= 1, epochs >= 0")
        names = {f"{m}@{k}" for m in ("recall", "ndcg") for k in DEFAULT_KS}
        if cfg.select_metric not in names:
            raise ValueError(
                f"select_metric must be one of {sorted(names)}, got {cfg.select_metric!r}"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# SASRec on Beauty (issue 5): Adam 1e-3, batch 256; ~390 epochs to .0823 R@10 with CE.
SASREC_RECIPE: dict[str, Any] = {
    "preset": "sasrec_beauty",
    "lr": 1e-3,
    "batch_size": 256,
    "epochs": 400,
    "patience": 20,
}
# TIGER (§4.1 trains with batch 256; larger batches keep a GPU busy): AdamW 1e-3
# with a short warmup. Not yet validated for quality (no GPU in the session
# that wrote it): docs/RESULTS_recommender.md.
TIGER_RECIPE: dict[str, Any] = {
    "preset": "tiger_small",
    "lr": 1e-3,
    "batch_size": 1024,
    "weight_decay": 0.01,
    "warmup_steps": 200,
    "grad_clip": 1.0,
    "epochs": 200,
    "patience": 10,
}


# ----------------------------------------------------------------------------
# data shared by both loops
# ----------------------------------------------------------------------------


@dataclass
class _Data:
    num_items: int
    sequences: Any  # Sequences (training portion)
    valid: Any  # SplitData with full histories
    test: Any
    head_mask: Tensor  # [N] bool


def _load_data(cfg: TrainConfig) -> _Data:
    num_items = load_items(cfg.root).num_rows
    seqs = train_sequences(cfg.root)
    valid_file = first_users(load_split(cfg.root, "valid"), cfg.max_users)
    test_file = first_users(load_split(cfg.root, "test"), cfg.max_users)
    limit = seqs.num_users if cfg.max_users is None else min(cfg.max_users, seqs.num_users)
    counts = np.bincount(seqs.items[: seqs.offsets[limit]], minlength=num_items)
    return _Data(
        num_items=num_items,
        sequences=seqs,
        valid=full_history_split(valid_file, seqs, None),
        test=full_history_split(test_file, seqs, valid_file),
        head_mask=head_items(torch.as_tensor(counts), cfg.head_fraction),
    )


# ----------------------------------------------------------------------------
# SASRec
# ----------------------------------------------------------------------------


def build_sasrec(cfg: TrainConfig, num_items: int) -> SASRec:
    if cfg.arch is not None:
        return sasrec(num_items, **cfg.arch)
    if cfg.preset not in SASREC_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: SASRec presets are {sorted(SASREC_PRESETS)}")
    return SASREC_PRESETS[cfg.preset](num_items, loss=cfg.loss)


def sasrec_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """SASRec with loss at every position over each user's training sequence."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = _load_data(cfg)
    device = reporter.device
    net = build_sasrec(cfg, data.num_items)
    model_cfg = net.cfg
    model = reporter.prepare_model(net)
    # SASRec §4.2: Adam with beta2 0.98.
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    step_model = torch.compile(model, dynamic=True) if cfg.compile else model

    # (1) training rows on the device: each user's last max_len + 1 items.
    rows = sequence_rows(data.sequences, model_cfg.max_len, cfg.max_users)
    seq = torch.as_tensor(rows.history, device=device)  # [U x max_len+1], -1 left padding

    def train_batches(epoch: int):
        for idx, length in _epoch_batches(rows, cfg, epoch, reporter, device):
            x = seq[idx, -length:]  # dense: no padding inside a length bucket
            yield x[:, :-1], x[:, 1:]

    def loss_fn(batch):
        inputs, targets = batch
        return step_model(inputs, targets)

    # (2) evaluation: full-catalog scores -> ranks, plain and exclude_seen.
    def rank_batch(history: Tensor, users: Tensor, targets: Tensor, full: list[np.ndarray]):
        scores = unwrap(model).score(history)  # [b x N]
        seen = history_mask(full, data.num_items, device=scores.device)
        return target_ranks(scores, targets), target_ranks(scores, targets, exclude=seen)

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        return _evaluate(
            unwrap(model), split, model_cfg.max_len, rank_batch, data, None, cfg, reporter
        )

    _fit_select_test(
        "sasrec",
        model_cfg.to_dict(),
        model,
        optimizer,
        cfg,
        reporter,
        train_batches,
        loss_fn,
        evaluate,
    )


# ----------------------------------------------------------------------------
# TIGER
# ----------------------------------------------------------------------------


def build_tiger(cfg: TrainConfig, num_items: int) -> Tiger:
    if cfg.sids is None:
        raise ValueError(
            "TIGER needs a SID table: set sids (e.g. --sids <root>/sids/<run>.parquet)"
        )
    table = read_sid_table(cfg.sids, num_items=num_items)
    codes = torch.as_tensor(table.full_codes())
    sizes = table.full_codebook_sizes()
    tag_text = None
    if cfg.hierarchy_aware:
        if cfg.tag_text is None:
            raise ValueError(
                "hierarchy_aware=True needs tag_text (tag-path embeddings); or set it False"
            )
        tag_text = torch.load(cfg.tag_text, map_location="cpu", weights_only=True)
    if cfg.arch is not None:  # the config's switch decides, whatever arch says
        arch = {**cfg.arch, "hierarchy_aware": cfg.hierarchy_aware}
        return tiger(codes, sizes, **arch, tag_text=tag_text)
    if cfg.preset not in TIGER_PRESETS:
        raise ValueError(f"preset {cfg.preset!r}: TIGER presets are {sorted(TIGER_PRESETS)}")
    return TIGER_PRESETS[cfg.preset](
        codes, sizes, tag_text=tag_text, hierarchy_aware=cfg.hierarchy_aware
    )


def tiger_train_loop(config: dict[str, Any], reporter: Reporter) -> None:
    """TIGER on every training prefix (train split rows), next-SID cross-entropy."""
    cfg = TrainConfig.from_dict(config)
    torch.manual_seed(cfg.seed)
    data = _load_data(cfg)
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

    def train_batches(epoch: int):
        for idx, length in _epoch_batches(rows, cfg, epoch, reporter, device):
            yield history[idx, -length:], users[idx], targets[idx]

    def loss_fn(batch):
        return step_model(*batch)

    # (2) evaluation: constrained beam search, ranks of the target in the top-k.
    beam = cfg.beam_width

    def rank_batch(
        hist: Tensor, batch_users: Tensor, batch_targets: Tensor, full: list[np.ndarray]
    ):
        net_ = unwrap(model)
        state = net_.encode(hist, batch_users)
        items = constrained_beam_search(
            net_, hist.shape[0], trie, beam_width=beam, topk=beam, state=state
        ).items  # [b x beam], best first, -1 padding
        seen = history_mask(full, data.num_items, device=items.device)
        return ranks_from_topk(items, batch_targets), ranks_from_topk(
            drop_seen(items, seen)[0], batch_targets
        )

    def evaluate(split_name: str) -> dict[str, float]:
        split = data.valid if split_name == "valid" else data.test
        return _evaluate(
            unwrap(model), split, model_cfg.max_history, rank_batch, data, beam, cfg, reporter
        )

    _fit_select_test(
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


# ----------------------------------------------------------------------------
# pieces shared by both loops
# ----------------------------------------------------------------------------


def _epoch_batches(rows: Rows, cfg: TrainConfig, epoch: int, reporter: Reporter, device):
    """This rank's share of each length-bucketed batch of the epoch: (index tensor, length)."""
    world, rank = reporter.world_size, reporter.rank
    rng = np.random.default_rng([cfg.seed, epoch])  # the same batches on every rank
    batches = length_buckets(rows.lengths, cfg.batch_size, rng, min_size=world)
    if not batches:
        return
    mine = [b[rank::world] for b in batches]
    flat = torch.as_tensor(np.concatenate(mine), device=device)  # one copy to the device per epoch
    bounds = np.concatenate([[0], np.cumsum([len(m) for m in mine])])
    for i, b in enumerate(batches):
        yield flat[bounds[i] : bounds[i + 1]], int(rows.lengths[b[0]])


def _evaluate(
    net: torch.nn.Module,
    split,
    max_history: int,
    rank_batch: Callable,
    data: _Data,
    topk: int | None,
    cfg: TrainConfig,
    reporter: Reporter,
) -> dict[str, float]:
    """Primary and `exclude_seen/` metrics (overall, head/, tail/) of one split.

    Each rank ranks its share of the users (padding-free length buckets); the
    ranks are gathered so every rank computes the same metrics. topk: the
    length of a generated ranking (not found = topk), None for full-catalog
    scores (not found = N).
    """
    device = reporter.device
    rows = split_rows(split, max_history)
    mine = np.arange(reporter.rank, len(rows), reporter.world_size)
    plain, unseen, targets = [], [], []
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for idx in length_buckets(rows.lengths[mine], cfg.eval_batch_size):
            sel = mine[idx]
            length = int(rows.lengths[sel[0]])
            hist = torch.as_tensor(rows.history[sel, -length:], device=device)
            users = torch.as_tensor(rows.users[sel], device=device)
            tgt = torch.as_tensor(rows.targets[sel], device=device)
            full = [split.history(i) for i in sel]
            p, u = rank_batch(hist, users, tgt, full)
            plain.append(p.cpu())
            unseen.append(u.cpu())
            targets.append(tgt.cpu())
    net.train(was_training)
    gathered = _gather(
        [torch.cat(x) if x else torch.zeros(0, dtype=torch.long) for x in (plain, unseen, targets)]
    )
    p, u, t = (torch.cat(parts) for parts in zip(*gathered, strict=True))
    metrics = {}
    for prefix, ranks in (("", p), (EXCLUDE_SEEN_PREFIX, u)):
        ev = RankingEvaluator(data.num_items, DEFAULT_KS, data.head_mask, prefix, not_found=topk)
        ev.add(ranks, t)
        metrics.update(ev.compute())
    return metrics


def _gather(tensors: list[Tensor]) -> list[list[Tensor]]:
    """[per rank: tensors] from every rank (just this one's without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [tensors]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, tensors)
    return out


def _agree(flag: bool) -> bool:
    """True on every rank if it is True on any (a stopping decision all ranks share)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, bool(flag))
    return any(out)


class _Tracker:
    """Rank 0 logs to the job's MLflow run through the client API (no active run
    needed in the worker process); other ranks and runs without MLflow do nothing."""

    def __init__(self, cfg: TrainConfig, rank: int):
        self.client = None
        if rank == 0 and cfg.mlflow_uri and cfg.mlflow_run_id:
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri=cfg.mlflow_uri)
            self.run_id = cfg.mlflow_run_id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        from sidrec.tracking import metric_key

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_key(k), float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        for i in range(0, len(batch), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])


@dataclass
class _Selection:
    """Early-stopping state, saved in every checkpoint."""

    best: float = -math.inf
    best_epoch: int = -1
    bad_evals: int = 0
    stopped: bool = False
    elapsed_s: float = 0.0  # training + evaluation wall time so far, across restarts


def _fit_select_test(
    kind: str,
    model_config: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    reporter: Reporter,
    train_batches: Callable[[int], Any],
    loss_fn: Callable[[Any], Tensor],
    evaluate: Callable[[str], dict[str, float]],
) -> None:
    """Epochs with valid-NDCG@10 selection and early stopping, then test once."""
    net = unwrap(model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    )
    tracker = _Tracker(cfg, reporter.rank)
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
    autocast = (
        torch.autocast(reporter.device.type, dtype=torch.bfloat16)
        if cfg.bf16 and reporter.device.type == "cuda"
        else nullcontext()
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
    for epoch in range(start, cfg.epochs):
        if sel.stopped:
            break
        t0 = time.perf_counter()
        model.train()
        total, steps = torch.zeros((), device=reporter.device), 0
        for batch in train_batches(epoch):
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
        sel.elapsed_s += time.perf_counter() - t0
        over_budget = cfg.time_budget_s is not None and sel.elapsed_s >= cfg.time_budget_s
        sel.stopped = _agree(sel.bad_evals >= cfg.patience or over_budget)
        metrics.update({"best_epoch": sel.best_epoch, f"best_valid/{cfg.select_metric}": sel.best})
        tracker.log(metrics, step=epoch)
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
    tracker.log(final, step=max(last, 0))
    reporter.report(final, save=checkpoint(last, {"done": True, "test_metrics": test}))
