"""The tokenizer train loops on a real Beauty slice: in-process with resume, and
on Ray Train with 2 DDP workers surviving a killed worker."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.data import DataError
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.tokenizers import (
    hidvae_beauty,
    rqkmeans_default,
    rqkmeans_loop,
    rqvae_tiger,
    train_loop,
)
from sidrec.tokenizers.train import STATE_FILE, epoch_lr, epoch_order

# Ray workers cannot import test modules by name: ship this one by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = dict(
    hidden_dims=(64,), latent_dim=16, codebook_size=16, batch_size=128, lr=3e-3, kmeans_iters=10
)
# The most common level-0 tag of the slice covers 33.8% of its items.
MAJORITY_LEVEL0 = 0.338


def _config(root: Path, cfg) -> dict:
    return {
        "tokenizer": cfg,
        "embeddings": str(root / "embeddings" / "tfidf.parquet"),
        "tags": str(root / "catalog" / "items.parquet"),
    }


def test_rqvae_local_run_reports_metrics_checkpoints_and_resumes(tmp_path, beauty_slice):
    cfg = dataclasses.replace(rqvae_tiger(), **SMALL, epochs=2)
    run = RunSpec(name="rq", storage_path=str(tmp_path))
    first = fit(train_loop, _config(beauty_slice, cfg), run)
    assert [m["epoch"] for m in first.history] == [0, 1]
    last = first.history[-1]
    for key in (
        "recon_loss",
        "collision_rate",
        "max_items_per_sid",
        "train/vq_loss",
        "utilization/level_2",
        "perplexity/level_0",
        "tag_purity/level_0",
        "epoch_seconds",
    ):
        assert key in last, key
    assert 0 <= last["collision_rate"] <= 1
    state = load_state(first.checkpoint, STATE_FILE)
    assert state["codes"].shape == (1500, 3) and state["codes"].max() < 16
    # Same run, more epochs: continues after the last checkpoint.
    second = fit(train_loop, _config(beauty_slice, dataclasses.replace(cfg, epochs=3)), run)
    assert [m["epoch"] for m in second.history] == [2]
    assert second.metrics["start_epoch"] == 2


def test_hidvae_local_run_measures_tag_accuracy(tmp_path, beauty_slice):
    cfg = dataclasses.replace(hidvae_beauty(), **SMALL, epochs=4)
    outcome = fit(train_loop, _config(beauty_slice, cfg), RunSpec("hid", str(tmp_path)))
    first, last = outcome.history[0], outcome.history[-1]
    for level in range(3):
        assert 0 <= last[f"tag_acc/level_{level}"] <= 1
    # Level 0 has 6 tags on Beauty: the classifier beats the majority class in a few epochs.
    assert last["tag_acc/level_0"] > MAJORITY_LEVEL0 + 0.2
    assert last["train/pred_loss"] < first["train/pred_loss"]
    assert "train/unique_loss" in last and "train/align_loss" in last


def test_epoch_order_keeps_each_colliding_sid_together():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 40, size=(300, 2))  # 300 items on <= 1600 SIDs: many collide
    order = epoch_order(300, seed=5, codes=codes).numpy()
    assert sorted(order.tolist()) == list(range(300))
    sid_of = [tuple(codes[i]) for i in order]
    runs = [sid for k, sid in enumerate(sid_of) if k == 0 or sid != sid_of[k - 1]]
    assert len(runs) == len(set(runs)), "a SID's items appear in one contiguous run"
    assert np.array_equal(order, epoch_order(300, seed=5, codes=codes).numpy())
    assert not np.array_equal(order, epoch_order(300, seed=6, codes=codes).numpy())
    plain = epoch_order(300, seed=5).numpy()
    assert sorted(plain.tolist()) == list(range(300))


def test_cosine_schedule_decays_from_lr_towards_zero():
    cfg = dataclasses.replace(rqvae_tiger(), lr=1e-3, epochs=10, lr_schedule="cosine")
    rates = [epoch_lr(cfg, e) for e in range(10)]
    assert (
        rates[0] == 1e-3
        and all(a > b for a, b in zip(rates, rates[1:], strict=False))
        and rates[-1] > 0
    )
    assert epoch_lr(dataclasses.replace(cfg, lr_schedule="constant"), 9) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        dataclasses.replace(cfg, lr_schedule="step").validate(1000)


def test_collision_batches_show_the_uniqueness_loss_more_pairs(tmp_path, beauty_slice):
    seen = {}
    for grouped in (False, True):
        cfg = dataclasses.replace(
            hidvae_beauty(), **(SMALL | {"codebook_size": 4}), epochs=3, collision_batches=grouped
        )
        outcome = fit(
            train_loop, _config(beauty_slice, cfg), RunSpec(f"grouped-{grouped}", str(tmp_path))
        )
        seen[grouped] = np.mean([h["train/colliding_pairs"] for h in outcome.history[1:]])
    assert seen[True] > 2 * seen[False] > 0


def test_rqkmeans_loop_fits_one_level_per_report(tmp_path, beauty_slice):
    cfg = dataclasses.replace(rqkmeans_default(), codebook_size=16, kmeans_iters=10)
    outcome = fit(rqkmeans_loop, _config(beauty_slice, cfg), RunSpec("km", str(tmp_path)))
    rates = [m["collision_rate"] for m in outcome.history]
    assert len(rates) == 3 and rates == sorted(rates, reverse=True)  # each level splits more
    state = load_state(outcome.checkpoint, STATE_FILE)
    assert len(state["centroids"]) == 3 and state["codes"].shape == (1500, 3)


def test_resume_with_embeddings_of_another_width_is_refused(tmp_path, beauty_slice):
    cfg = dataclasses.replace(rqvae_tiger(), **SMALL, epochs=1)
    run = RunSpec(name="rq", storage_path=str(tmp_path))
    fit(train_loop, _config(beauty_slice, cfg), run)
    other = tmp_path / "narrow.parquet"
    table = pq.read_table(beauty_slice / "embeddings" / "tfidf.parquet")
    narrow = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))[:, :20]
    pq.write_table(
        pa.table(
            {
                "item_id": table.column("item_id"),
                "embedding": pa.array(narrow.tolist(), pa.list_(pa.float32())),
            }
        ),
        other,
    )
    config = {**_config(beauty_slice, dataclasses.replace(cfg, epochs=2)), "embeddings": str(other)}
    with pytest.raises(DataError, match="dimensions disagree") as err:
        fit(train_loop, config, run)
    assert err.value.field == "embedding"


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


class _DyingReporter:
    """The real reporter, except that rank 1 dies right after reporting epoch
    `die_at` (once), as a preempted node would."""

    def __init__(self, inner, config):
        self.inner, self.config = inner, config
        self.rank, self.world_size, self.device = inner.rank, inner.world_size, inner.device

    def prepare_model(self, model):
        return self.inner.prepare_model(model)

    def latest_checkpoint(self):
        return self.inner.latest_checkpoint()

    def report(self, metrics, save=None):
        self.inner.report(metrics, save)
        marker = Path(self.config["marker"])
        if metrics["epoch"] == self.config["die_at"] and self.rank == 1 and not marker.exists():
            marker.touch()
            _wait_until_registered(self.config["run_dir"], metrics["epoch"])
            os._exit(1)


def dying_train_loop(config, reporter):
    train_loop(config, _DyingReporter(reporter, config))


@pytest.mark.slow
def test_ray_train_two_workers_resume_after_a_worker_dies(tmp_path, beauty_slice, ray_session):
    from sidrec import tracking

    cfg = dataclasses.replace(hidvae_beauty(), **SMALL, epochs=3)
    config = {
        **_config(beauty_slice, cfg),
        "die_at": 1,
        "run_dir": str(tmp_path / "ray" / "hid-ddp"),
        "marker": str(tmp_path / "died"),
    }
    run = RunSpec(name="hid-ddp", storage_path=str(tmp_path / "ray"), num_workers=2, max_failures=1)
    with tracking.start_run(tmp_path, "beauty", "hid-ddp") as active:
        # Per-epoch metrics go to MLflow from rank 0 inside the Ray worker, through
        # the run context's reporter: the loop knows nothing of MLflow.
        from sidrec.reporting import MlflowReporter

        uri = tracking.tracking_uri(tmp_path)
        reporters = [MlflowReporter(uri, active.info.run_id)]
        outcome = fit(dying_train_loop, config, run, reporters=reporters)
    from mlflow import MlflowClient

    logged = MlflowClient(uri).get_metric_history(active.info.run_id, "collision_rate")
    assert sorted({m.step for m in logged}) == [0, 1, 2]
    assert (tmp_path / "died").exists()
    assert outcome.metrics["epoch"] == 2
    # Restarted from the checkpoint of epoch 1, not from scratch.
    assert outcome.metrics["start_epoch"] == 2
    state = load_state(outcome.checkpoint, STATE_FILE)
    assert state["epoch"] == 2 and state["codes"].shape == (1500, 3)
    assert 0 <= outcome.metrics["collision_rate"] < 1
    assert outcome.metrics["tag_acc/level_0"] > MAJORITY_LEVEL0


def test_a_checkpoint_only_resumes_the_config_that_wrote_it(tmp_path, beauty_slice):
    cfg = dataclasses.replace(rqvae_tiger(), **SMALL, epochs=1)
    run = RunSpec(name="rq", storage_path=str(tmp_path))
    fit(train_loop, _config(beauty_slice, cfg), run)
    changed = dataclasses.replace(cfg, epochs=2, lr=1e-2)
    with pytest.raises(ValueError, match=r"another config \(fields \['lr'\]"):
        fit(train_loop, _config(beauty_slice, changed), run)
