"""jobs/evaluate.py end to end on real data: ingest, rank the catalog, MLflow, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mostpop_on_movielens_logs_to_mlflow(tmp_path, data_dir, load_job):
    import mlflow

    job = load_job("evaluate")
    root = tmp_path / "ml"
    args = job.parse_args(
        ["--dataset", "movielens_100k", "--data-dir", str(data_dir), "--artifact-root", str(root)]
    )
    metrics = job.main(args)
    # 943 users, 1,682 items: popularity is far above chance (20/1682 = 0.012) on ML-100K.
    assert metrics["count"] == 943
    assert 0.05 < metrics["recall@20"] < 0.5
    assert metrics["ndcg@10"] <= metrics["recall@10"] <= metrics["recall@20"]
    assert metrics["head/count"] + metrics["tail/count"] == 943
    assert "exclude_seen/recall@10" in metrics

    record = json.loads((root / "eval/mostpop-test.json").read_text())
    assert record["metrics"] == metrics
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").get_run(
        record["mlflow_run_id"]
    )
    assert run.data.metrics["test/recall_at_20"] == pytest.approx(metrics["recall@20"])
    assert run.data.params["model"] == "mostpop"


@pytest.mark.slow
def test_itemknn_beats_mostpop_on_beauty(tmp_path, data_dir, beauty_root, load_job):
    job = load_job("evaluate")
    common = [
        "--dataset",
        "beauty",
        "--data-dir",
        str(data_dir),
        "--artifact-root",
        str(beauty_root),
    ]
    pop = job.main(job.parse_args(common + ["--model", "mostpop", "--no-mlflow"]))
    knn = job.main(job.parse_args(common + ["--model", "itemknn", "--no-mlflow"]))
    assert pop["count"] == knn["count"] == 22363
    assert knn["recall@10"] > 2 * pop["recall@10"]


def test_cli_without_data_dir_says_how_to_fix_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SIDREC_DATA_DIR"}
    proc = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--artifact-root", str(tmp_path), "--no-mlflow"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "SIDREC_DATA_DIR" in proc.stderr and "--data-dir" in proc.stderr
    assert "Traceback" not in proc.stderr
