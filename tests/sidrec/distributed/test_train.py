"""The train-loop runner: in-process checkpoints and resume, and Ray Train with 2
DDP workers surviving a killed worker."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import torch

from sidrec.distributed import RunSpec, fit, load_state, unwrap

# Ray workers cannot import test modules by name: ship this one by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _wait_until_registered(run_dir: str, epoch: int, timeout_s: float = 120.0) -> None:
    """Poll Ray Train's checkpoint-manager snapshot until the checkpoint reported
    at `epoch` is registered (what a restart resumes from), rather than sleeping a
    guessed time: Ray Train V2 registers a reported checkpoint when the controller
    next polls the workers, later on a busy machine."""
    snapshot = Path(run_dir) / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or mid-write
            latest = {}
        if latest.get("metrics", {}).get("epoch", -1) >= epoch:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint of epoch {epoch} registered in {snapshot}")


def regression_loop(config, reporter):
    """Fit y = x @ w with SGD; each rank takes its shard of a fixed data set."""
    torch.manual_seed(0)
    model = reporter.prepare_model(torch.nn.Linear(4, 1, bias=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = load_state(reporter.latest_checkpoint())
    start = 0
    if state is not None:
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    x, y = x[reporter.rank :: reporter.world_size], y[reporter.rank :: reporter.world_size]
    for epoch in range(start, config["epochs"]):
        marker = Path(config["marker"]) if config.get("marker") else None
        if marker and epoch == config["die_at"] and reporter.rank == 1 and not marker.exists():
            marker.touch()
            # Die once the last epoch's checkpoint is registered, as a preempted node would.
            _wait_until_registered(config["run_dir"], epoch - 1)
            os._exit(1)
        for _ in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x.to(reporter.device)), y.to(reporter.device))
            loss.backward()
            optimizer.step()

        def save(folder, epoch=epoch):
            torch.save(
                {
                    "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                },
                folder / "state.pt",
            )

        reporter.report({"epoch": epoch, "loss": loss.item(), "started_at": start}, save=save)


def test_local_run_checkpoints_and_resumes(tmp_path):
    run = RunSpec(name="reg", storage_path=str(tmp_path), num_workers=0)
    first = fit(regression_loop, {"epochs": 2}, run)
    assert [m["epoch"] for m in first.history] == [0, 1]
    assert first.history[-1]["loss"] < first.history[0]["loss"]
    assert load_state(first.checkpoint)["epoch"] == 1
    # Same name again with more epochs: picks up after the last checkpoint.
    second = fit(regression_loop, {"epochs": 4}, run)
    assert [m["epoch"] for m in second.history] == [2, 3]
    assert second.metrics["started_at"] == 2
    kept = sorted(p.name for p in (tmp_path / "reg").iterdir())
    assert kept == ["checkpoint_000002", "checkpoint_000003"]


def test_bad_run_specs_are_rejected():
    with pytest.raises(ValueError, match="run name"):
        RunSpec(name="a/b", storage_path="/tmp")
    with pytest.raises(ValueError, match="num_workers"):
        RunSpec(name="a", storage_path="/tmp", num_workers=-1)


@pytest.mark.slow
def test_ray_train_two_workers_resume_after_a_worker_dies(tmp_path, ray_session):
    run = RunSpec(name="reg-ddp", storage_path=str(tmp_path / "ray"), num_workers=2, max_failures=1)
    config = {
        "epochs": 4,
        "die_at": 2,
        "run_dir": str(tmp_path / "ray" / "reg-ddp"),
        "marker": str(tmp_path / "died"),
    }
    outcome = fit(regression_loop, config, run)
    assert (tmp_path / "died").exists()
    assert outcome.metrics["epoch"] == 3
    # Restarted from the checkpoint of epoch 1 (0 would mean from scratch).
    assert outcome.metrics["started_at"] == 2
    state = load_state(outcome.checkpoint)
    assert state["epoch"] == 3
    w = state["model"]["weight"].flatten()
    torch.testing.assert_close(w, torch.tensor([1.0, -2.0, 0.5, 3.0]), atol=0.05, rtol=0)


def test_gpu_request_without_gpus_fails_fast(tmp_path, ray_session):
    run = RunSpec(name="gpu", storage_path=str(tmp_path), num_workers=1, use_gpu=True)
    with pytest.raises(RuntimeError, match="GPUs"):
        fit(regression_loop, {"epochs": 1}, run)
