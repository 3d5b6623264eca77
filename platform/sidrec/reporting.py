"""Where a run's reports go: console, MLflow, ... as wrappers around the train loops.

A train loop reports once per epoch through its run context
(`sidrec.distributed.RunContext`: `context.report(metrics, save)`), and imports
none of the places the numbers end up. The context hands every report, on rank
0, to the `Reporter`s it was given:

    fit(train_loop, config, spec, reporters=[MlflowReporter(uri, run_id)])

- `on_checkpoint(folder, metrics)`: the checkpoint the loop just saved (the folder
  lives for the call only);
- `on_epoch(metrics)`: the epoch's metrics (the loop's last report, with the
  test metrics when it has them, is one too);
- `on_end(metrics)`: once, after the loop returned, with its last report.

The transports that carry every rank's report and the checkpoint to Ray, Ray
Train's `ray.train.report` and Tune's `tune.report`, are the run contexts
themselves (`RayTrainReporter`, `tuning.TuneReporter`); a Tune sweep's MLflow
runs are written on the driver (`tuning._mlflow.MlflowTrials`) with the same
batch writer as `MlflowReporter` (`tracking.log_metric_batch`). Like the loops,
this module imports neither Ray nor MLflow at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ConsoleReporter",
    "MlflowReporter",
    "Reporter",
    "format_metrics",
    "notify_checkpoint",
    "notify_end",
    "notify_epoch",
]

log = logging.getLogger("sidrec.distributed.train")  # the logger the metric lines always had


class Reporter(Protocol):
    """Receives a run's reports on rank 0 (see the module docstring)."""

    def on_epoch(self, metrics: Mapping[str, Any]) -> None: ...

    def on_checkpoint(self, folder: Path, metrics: Mapping[str, Any]) -> None: ...

    def on_end(self, metrics: Mapping[str, Any]) -> None: ...


class ConsoleReporter:
    """One log line per report: `epoch=3 loss=2.41 valid/ndcg@10=0.031 ...`."""

    def on_epoch(self, metrics: Mapping[str, Any]) -> None:
        log.info("%s", format_metrics(metrics))

    def on_checkpoint(self, folder: Path, metrics: Mapping[str, Any]) -> None:
        pass

    def on_end(self, metrics: Mapping[str, Any]) -> None:
        pass


class MlflowReporter:
    """Every report into one open MLflow run through the client API (no active run
    needed, so it works inside a Ray Train worker), step = the report's `epoch`.

    Picklable: the client is made on first use, in the process that reports."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id, "_client": None}

    def on_epoch(self, metrics: Mapping[str, Any]) -> None:
        from sidrec.tracking import log_metric_batch

        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        step = max(int(metrics.get("epoch", 0)), 0)  # -1: no epoch ran (epochs=0)
        log_metric_batch(self._client, self.run_id, metrics, step=step)

    def on_checkpoint(self, folder: Path, metrics: Mapping[str, Any]) -> None:
        pass  # the job logs the final artifacts (bundle, SID table) itself

    def on_end(self, metrics: Mapping[str, Any]) -> None:
        pass  # the run is the job's: it ends it


def notify_epoch(reporters: Iterable[Reporter], metrics: Mapping[str, Any]) -> None:
    for reporter in reporters:
        reporter.on_epoch(metrics)


def notify_checkpoint(
    reporters: Iterable[Reporter], folder: Path, metrics: Mapping[str, Any]
) -> None:
    for reporter in reporters:
        reporter.on_checkpoint(folder, metrics)


def notify_end(reporters: Iterable[Reporter], metrics: Mapping[str, Any]) -> None:
    for reporter in reporters:
        reporter.on_end(metrics)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )
