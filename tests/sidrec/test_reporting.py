"""Reporting as wrappers: a loop reports through its run context, which hands every
report to the Reporters `fit` was given (console, MLflow); the training code
imports none of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sidrec import tracking
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.reporting import MlflowReporter

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "sidrec"


def toy_loop(config, reporter):
    """Three epochs of a one-weight model, a checkpoint each, as every loop reports."""
    model = reporter.prepare_model(torch.nn.Linear(1, 1))
    for epoch in range(config["epochs"]):

        def save(folder, epoch=epoch):
            torch.save({"epoch": epoch, "model": model.state_dict()}, folder / "state.pt")

        reporter.report({"epoch": epoch, "loss": 1.0 / (epoch + 1), "ndcg@10": 0.1}, save=save)


class Recorder:
    """A Reporter that keeps what it was told."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []

    def on_epoch(self, metrics):
        self.calls.append(("epoch", metrics["epoch"]))

    def on_checkpoint(self, folder, metrics):
        # The folder holds the checkpoint while the call lasts.
        self.calls.append(("checkpoint", load_state(folder)["epoch"]))

    def on_end(self, metrics):
        self.calls.append(("end", metrics["epoch"]))


def test_every_report_reaches_the_reporters_in_order(tmp_path):
    recorder = Recorder()
    outcome = fit(
        toy_loop,
        {"epochs": 3},
        RunSpec(name="toy", storage_path=str(tmp_path / "train")),
        reporters=[recorder],
    )
    assert recorder.calls == [
        ("checkpoint", 0), ("epoch", 0),
        ("checkpoint", 1), ("epoch", 1),
        ("checkpoint", 2), ("epoch", 2),
        ("end", 2),
    ]  # fmt: skip
    assert outcome.metrics["epoch"] == 2 and load_state(outcome.checkpoint)["epoch"] == 2


@pytest.mark.slow  # a fresh MLflow SQLite store: ~7 s of migrations
def test_mlflow_reporter_logs_every_epoch_with_its_step(tmp_path):
    with tracking.start_run(tmp_path, "toy", "toy-run") as active:
        mlflow = MlflowReporter(tracking.tracking_uri(tmp_path), active.info.run_id)
        fit(
            toy_loop,
            {"epochs": 3},
            RunSpec(name="toy", storage_path=str(tmp_path / "train")),
            reporters=[mlflow],
        )
    from mlflow import MlflowClient

    client = MlflowClient(tracking.tracking_uri(tmp_path))
    history = client.get_metric_history(active.info.run_id, "loss")
    assert [(m.step, round(m.value, 3)) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.333)]
    assert client.get_metric_history(active.info.run_id, "ndcg_at_10")  # '@' cleaned


def test_no_training_module_imports_mlflow_or_a_reporter():
    """The issue's rule: no `mlflow` import in models/ or tokenizers/, and the
    train loops import no reporter (they get a run context)."""
    mlflow = re.compile(r"^\s*(import mlflow|from mlflow)", re.M)
    offenders = [
        str(path.relative_to(PACKAGE))
        for folder in ("models", "tokenizers")
        for path in (PACKAGE / folder).rglob("*.py")
        if mlflow.search(path.read_text())
    ]
    assert offenders == []
    loops = [
        PACKAGE / "models" / "train" / "_common.py",
        PACKAGE / "tokenizers" / "train.py",
        PACKAGE / "tokenizers" / "lamia" / "train.py",
    ]
    for path in loops:
        assert "sidrec.reporting" not in path.read_text(), path
