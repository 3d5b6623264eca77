"""jobs/train_recommender.py end to end on real Beauty users: 2 Ray Train workers,
a worker killed mid-run, MLflow registration, and loading `models:/NAME@ALIAS` in
a fresh process that recommends real items."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NUM_ITEMS = 12101  # Beauty
USERS = 600  # the first 600 Beauty users: every split has all of them

SASREC_TINY = {
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 1,
    "ffn_dim": 16,
    "dropout": 0.2,
    "max_len": 20,
    "loss": "ce",
}
TIGER_TINY = {
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "d_model": 32,
    "num_heads": 2,
    "head_dim": 16,
    "ffn_dim": 64,
    "dropout": 0.1,
    "num_user_tokens": 100,
    "max_history": 20,
    "hierarchy_aware": True,
}

SIDGPT_TINY = {
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 1,
    "ffn_dim": 16,
    "dropout": 0.2,
    "max_len": 20,
}

LOAD_AND_RECOMMEND = """
import json, sys
from sidrec.models.bundle import load_bundle
rec = load_bundle(sys.argv[1])
out = rec.recommend([[1, 2, 3], [10]], k=10, users=[0, 1] if rec.kind == "tiger" else None)
print(json.dumps({"kind": rec.kind, "items": out.items.tolist(),
                  "info": rec.describe(out.items[0].tolist())}))
"""


def sid_helpers():
    path = REPO / "tests" / "sidrec" / "models" / "sid_helpers.py"
    spec = importlib.util.spec_from_file_location("sid_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common_args(data_dir, root, arch, epochs, users=USERS):
    return [
        "--dataset", "beauty",
        "--data-dir", str(data_dir),
        "--artifact-root", str(root),
        "--max-users", str(users),
        "--num-workers", "2",
        "--arch", json.dumps(arch),
        "--epochs", str(epochs),
        "--batch-size", "64",
        "--alias", "ci",
    ]  # fmt: skip


def load_in_fresh_process(uri: str, root: Path, cwd: Path) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RECOMMEND, uri],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_real_recommendations(answer: dict, kind: str) -> None:
    assert answer["kind"] == kind
    for row in answer["items"]:
        assert len(row) == 10 and len(set(row)) == 10
        assert all(0 <= i < NUM_ITEMS for i in row)
    assert all(info["title"] for info in answer["info"])


class WorkerKiller(threading.Thread):
    """SIGKILLs one Ray Train worker of *this* test's Ray once the run has written two
    checkpoints (so the first is registered with the controller), like a lost node."""

    def __init__(self, storage: Path, pattern: str):
        super().__init__(daemon=True)
        self.storage, self.pattern = storage, pattern
        self.killed: list[int] = []
        self.stop = threading.Event()
        # The session-wide artifact root may hold earlier runs' checkpoints.
        self.before = set(self._checkpoints())

    def _checkpoints(self) -> list[Path]:
        return list(self.storage.glob(f"{self.pattern}/checkpoint_*"))

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            if len(set(self._checkpoints()) - self.before) >= 2:
                # Ray Train V2 registers a checkpoint when the controller next
                # polls the workers; give it that moment before the "node" dies.
                time.sleep(2)
                workers = [
                    p
                    for p in me.children(recursive=True)
                    if "RayTrainWorker" in " ".join(_cmdline(p))
                ]
                if workers:
                    workers[-1].kill()
                    self.killed.append(workers[-1].pid)
                    return
            time.sleep(0.1)


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slow
def test_sasrec_on_two_workers_survives_a_killed_worker_and_serves_from_the_registry(
    tmp_path, data_dir, beauty_root, ray_session, load_job
):
    job = load_job("train_recommender")
    args = job.parse_args(
        ["--model", "sasrec", "--loss", "ce", *common_args(data_dir, beauty_root, SASREC_TINY, 8)]
    )
    killer = WorkerKiller(beauty_root / "ray_train", "sasrec-ce-beauty-*")
    killer.start()
    try:
        record = job.main(args)
    finally:
        killer.stop.set()
    assert killer.killed, "no worker was killed: the run ended before its second checkpoint"
    # The restarted worker group resumed from a checkpoint, not from scratch.
    assert record["start_epoch"] >= 1
    assert 0 <= record["best_epoch"] < record["epochs_run"] <= 8
    test = record["test"]
    assert test["count"] == USERS and test["exclude_seen/count"] == USERS
    assert test["head/count"] + test["tail/count"] == USERS
    assert record["registered"] == "models:/sidrec-sasrec-beauty@ci"

    import mlflow

    client = mlflow.MlflowClient(
        tracking_uri=f"sqlite:///{beauty_root / 'mlflow.db'}",
        registry_uri=f"sqlite:///{beauty_root / 'mlflow.db'}",
    )
    run = client.get_run(record["mlflow_run_id"])
    assert run.data.metrics["test/recall_at_10"] == pytest.approx(test["recall@10"])
    assert "valid/ndcg_at_10" in run.data.metrics and run.data.params["loss"] == "ce"

    answer = load_in_fresh_process(record["registered"], beauty_root, tmp_path)
    assert_real_recommendations(answer, "sasrec")


@pytest.mark.slow
def test_tiger_on_two_workers_with_hierarchy_aware_embeddings_serves_from_the_registry(
    tmp_path, data_dir, beauty_root, ray_session, load_job
):
    sids = sid_helpers().write_category_sids(beauty_root)
    job = load_job("train_recommender")
    args = job.parse_args(
        [
            "--model", "tiger", "--sids", str(sids), "--hierarchy-aware",
            *common_args(data_dir, beauty_root, TIGER_TINY, 1),
        ]
    )  # fmt: skip
    record = job.main(args)
    assert record["config"]["hierarchy_aware"] is True
    test = record["test"]
    assert test["count"] == USERS and "exclude_seen/recall@20" in test
    assert record["registered"] == "models:/sidrec-tiger-beauty@ci"
    answer = load_in_fresh_process(record["registered"], beauty_root, tmp_path)
    assert_real_recommendations(answer, "tiger")
    # every answer carries its SID and the tag path behind the codes
    first = answer["info"][0]
    assert len(first["sid"]) == 4 and first["tag_path"]


@pytest.mark.slow
def test_sidgpt_on_two_workers_survives_a_killed_worker_and_serves_from_the_registry(
    tmp_path, data_dir, beauty_root, ray_session, load_job
):
    """The decoder-only kind: whole-sequence training on 2 Ray Train workers, a worker
    SIGKILLed after two checkpoints, resumed, tested, registered, loaded elsewhere."""
    sids = sid_helpers().write_category_sids(beauty_root)
    job = load_job("train_recommender")
    args = job.parse_args(
        [
            "--model", "sidgpt", "--sids", str(sids), "--hierarchy-aware",
            *common_args(data_dir, beauty_root, SIDGPT_TINY, 8),
        ]
    )  # fmt: skip
    killer = WorkerKiller(beauty_root / "ray_train", "sidgpt-beauty-*")
    killer.start()
    try:
        record = job.main(args)
    finally:
        killer.stop.set()
    assert killer.killed, "no worker was killed: the run ended before its second checkpoint"
    assert record["start_epoch"] >= 1  # resumed from a checkpoint, not from scratch
    assert record["model"] == "sidgpt" and record["config"]["hierarchy_aware"] is True
    test = record["test"]
    assert test["count"] == USERS and test["exclude_seen/count"] == USERS
    assert record["registered"] == "models:/sidrec-sidgpt-beauty@ci"
    answer = load_in_fresh_process(record["registered"], beauty_root, tmp_path)
    assert_real_recommendations(answer, "sidgpt")
    assert len(answer["info"][0]["sid"]) == 4


def test_tiger_without_sids_says_how_to_fix_it(tmp_path, data_dir, beauty_root, load_job):
    job = load_job("train_recommender")
    args = job.parse_args(
        [
            "--model",
            "tiger",
            "--data-dir",
            str(data_dir),
            "--artifact-root",
            str(beauty_root),
            "--no-mlflow",
        ]
    )
    with pytest.raises(SystemExit, match="--sids PATH"):
        job.main(args)
