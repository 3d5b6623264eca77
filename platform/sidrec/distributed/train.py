"""Run one `train_loop(config, reporter)` in-process or on Ray Train workers.

Every trainable model in sidrec is a plain function `train_loop(config, reporter)`
(docs/ARCHITECTURE.md, "Distributed execution"). The loop never imports Ray, MLflow
or a logger of metrics: it asks its run context (`reporter`, a `RunContext`)
for its rank, device and last checkpoint, wraps its model through it, and
reports metrics plus a save function once per epoch. The context keeps the
checkpoint and hands the report, on rank 0, to the `sidrec.reporting.Reporter`s
given to `fit` (console, MLflow). The same loop then runs

- in one process (`num_workers=0`): `LocalReporter`, checkpoints in a folder;
  this is how quality and speed figures are measured on a GPU box without Ray;
- on N Ray Train workers (`num_workers>=1`): `TorchTrainer` with DDP (gloo on
  CPU, nccl on GPU), a checkpoint every epoch in the storage path, and a restart
  from the latest checkpoint when a worker dies (`FailureConfig`).

    def train_loop(config, reporter):
        state = resume_state(reporter, identity)       # sidrec.engine
        model = reporter.prepare_model(build(config, state))
        run_epochs(Task(model, ...), EpochPlan(...), reporter, state)

`sidrec.engine.run_epochs` is the one epoch loop of the library: it calls
`reporter.report(metrics, save=...)` once per epoch. A checkpoint is restored
into a folder of each process's own (`latest_checkpoint`), so ranks on one node
never read a folder another is downloading into.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from sidrec.reporting import (
    ConsoleReporter,
    notify_checkpoint,
    notify_end,
    notify_epoch,
)
from sidrec.reporting import Reporter as MetricsReporter

__all__ = [
    "Reporter",
    "RunContext",
    "LocalReporter",
    "RunSpec",
    "TrainOutcome",
    "fit",
    "load_state",
    "unwrap",
]


SaveFn = Callable[[Path], None]
TrainLoop = Callable[[dict[str, Any], "Reporter"], None]
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{6})$")


class RunContext(Protocol):
    """What a train loop may ask of where it runs (the loops call it `reporter`)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def report(self, metrics: dict[str, float], save: SaveFn | None = None) -> None:
        """Record this epoch's metrics; with `save`, rank 0 writes a checkpoint
        by calling save(folder) and every rank takes part in the report."""

    def latest_checkpoint(self) -> Path | None:
        """A local folder holding the newest checkpoint, or None on a fresh start."""


# The loops' name for their run context (`reporter`), kept: every loop types it so.
Reporter = RunContext


@dataclass(frozen=True)
class RunSpec:
    """How to run a loop, not what it trains."""

    # Unique per run: Ray silently resumes an existing (storage_path, name).
    name: str
    storage_path: str
    # 0 = in this process without Ray; N >= 1 = N Ray Train workers (DDP).
    num_workers: int = 0
    use_gpu: bool = False
    # Restarts from the latest checkpoint after a worker dies (Ray only).
    max_failures: int = 1
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.\-]+", self.name):
            raise ValueError(f"run name {self.name!r}: use letters, digits, '.', '_', '-'")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TrainOutcome:
    metrics: dict[str, Any]  # the last report
    checkpoint: Path | None  # a local folder with the last checkpoint's files
    history: list[dict[str, Any]] = field(default_factory=list)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (what to save and to evaluate)."""
    return getattr(model, "module", model)


def load_state(checkpoint: Path | None, filename: str = "state.pt") -> dict[str, Any] | None:
    """The dict a loop saved with torch.save into its checkpoint, or None."""
    if checkpoint is None:
        return None
    return torch.load(checkpoint / filename, map_location="cpu", weights_only=False)


class LocalReporter:
    """One process, no Ray. Checkpoints go to `<root>/checkpoint_NNNNNN`, each
    written to a temporary folder and renamed, the newest `keep` kept; every
    report goes to `reporters` (default: the console)."""

    rank = 0
    world_size = 1

    def __init__(
        self,
        root: str | os.PathLike,
        keep: int = 2,
        device: torch.device | None = None,
        reporters: list[MetricsReporter] | None = None,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.reporters = [ConsoleReporter()] if reporters is None else list(reporters)
        self.history: list[dict[str, Any]] = []

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, float], save: SaveFn | None = None) -> None:
        self.history.append(dict(metrics))
        if save is not None:
            existing = self._checkpoints()
            index = int(_CHECKPOINT_RE.match(existing[-1].name).group(1)) + 1 if existing else 0
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-checkpoint-"))
            target = self.root / f"checkpoint_{index:06d}"
            try:
                save(staging)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            for old in self._checkpoints()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
            notify_checkpoint(self.reporters, target, metrics)
        notify_epoch(self.reporters, metrics)

    def end(self) -> None:
        """After the loop returned: `on_end` with its last report."""
        notify_end(self.reporters, self.history[-1] if self.history else {})

    def latest_checkpoint(self) -> Path | None:
        existing = self._checkpoints()
        return existing[-1] if existing else None

    def _checkpoints(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if _CHECKPOINT_RE.match(p.name))


class RayTrainReporter:
    """Inside a Ray Train worker: DDP via ray.train.torch, checkpoints via ray.train."""

    def __init__(self, reporters: list[MetricsReporter] | None = None) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()
        self._restored: Path | None = None
        # Rank 0 alone writes to the reporters (one MLflow line per epoch, not N).
        self.reporters = list(reporters or []) if self.rank == 0 else []
        self._last: dict[str, Any] = {}

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, float], save: SaveFn | None = None) -> None:
        import ray.train

        self._last = dict(metrics)
        if save is None or self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            notify_epoch(self.reporters, metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save(Path(folder))
            notify_checkpoint(self.reporters, Path(folder), metrics)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        notify_epoch(self.reporters, metrics)

    def end(self) -> None:
        notify_end(self.reporters, self._last)

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        if self._restored is None:
            checkpoint = ray.train.get_checkpoint()
            if checkpoint is None:
                return None
            # A folder of our own per process: with the default target, two
            # workers on one node can download into (and corrupt) the same folder.
            self._restored = Path(
                checkpoint.to_directory(tempfile.mkdtemp(prefix="sidrec-restore-"))
            )
        return self._restored


def fit(
    train_loop: TrainLoop,
    config: dict[str, Any],
    run: RunSpec,
    callbacks: list | None = None,
    reporters: list[MetricsReporter] | None = None,
) -> TrainOutcome:
    """Run `train_loop` as `run` says; returns the last metrics and checkpoint.

    reporters: where every report goes besides the checkpoint store, on rank 0
    (`sidrec.reporting`: MLflow, ...); in this process the console is always one.
    callbacks: `ray.train.UserCallback`s for the Ray Train run (e.g. Tune's
    `TuneReportCallback` when a Tune trial drives the run); Ray runs only."""
    if run.num_workers == 0:
        if callbacks:
            raise ValueError("callbacks need Ray Train workers: set num_workers >= 1")
        return _fit_local(train_loop, config, run, list(reporters or []))
    return _fit_ray(train_loop, config, run, callbacks, list(reporters or []))


def _fit_local(
    train_loop: TrainLoop,
    config: dict[str, Any],
    run: RunSpec,
    reporters: list[MetricsReporter],
) -> TrainOutcome:
    if run.use_gpu and not torch.cuda.is_available():
        raise RuntimeError("use_gpu=True but torch sees no CUDA device; set use_gpu=False")
    device = torch.device("cuda" if run.use_gpu else "cpu")
    reporter = LocalReporter(
        Path(run.storage_path) / run.name,
        run.keep_checkpoints,
        device,
        reporters=[ConsoleReporter(), *reporters],
    )
    train_loop(config, reporter)
    reporter.end()
    last = reporter.history[-1] if reporter.history else {}
    return TrainOutcome(last, reporter.latest_checkpoint(), reporter.history)


def _ray_worker(payload: dict[str, Any]) -> None:
    context = RayTrainReporter(payload["reporters"])
    payload["loop"](payload["config"], context)
    context.end()


def _fit_ray(
    train_loop: TrainLoop,
    config: dict[str, Any],
    run: RunSpec,
    callbacks: list | None = None,
    reporters: list[MetricsReporter] | None = None,
) -> TrainOutcome:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sidrec.distributed.ray_init import init_ray

    init_ray()
    if run.use_gpu and ray.cluster_resources().get("GPU", 0) < run.num_workers:
        # Asking Ray for GPUs it does not have hangs forever (docs/ARCHITECTURE.md, Ray pitfalls).
        raise RuntimeError(
            f"use_gpu=True with {run.num_workers} workers, but the Ray cluster has "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs; set use_gpu=False or add GPU nodes"
        )
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"loop": train_loop, "config": config, "reporters": reporters or []},
        scaling_config=ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu),
        run_config=RunConfig(
            name=run.name,
            storage_path=str(Path(run.storage_path).resolve())
            if "://" not in run.storage_path
            else run.storage_path,
            failure_config=FailureConfig(max_failures=run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=run.keep_checkpoints),
            callbacks=list(callbacks or []),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    checkpoint = Path(result.checkpoint.to_directory()) if result.checkpoint else None
    return TrainOutcome(dict(result.metrics or {}), checkpoint, [])
