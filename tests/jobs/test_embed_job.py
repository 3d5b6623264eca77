"""jobs/embed_catalog.py end to end: real local Ray, real MiniLM, real MLflow, 200 real items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_catalog(tmp_path, beauty_root) -> Path:
    """An artifact root whose catalog is the first 200 Beauty items."""
    root = tmp_path / "art"
    (root / "catalog").mkdir(parents=True)
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, 200)
    pq.write_table(items, root / "catalog" / "items.parquet")
    return root


@pytest.fixture
def own_tracking_store():
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which sidrec.tracking then reads
    as the user's choice for every later artifact root in this process (a job process has
    one root; a pytest process has many): start without it and leave none behind."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def test_main_embeds_logs_and_is_idempotent(
    small_catalog, ray_session, load_job, capsys, own_tracking_store
):
    job = load_job("embed_catalog")
    argv = [
        "--dataset",
        "beauty",
        "--artifact-root",
        str(small_catalog),
        "--no-ingest",
        "--no-progress",
        "--rows-per-call",
        "128",
    ]
    manifest = job.main(job.parse_args(argv))
    out = capsys.readouterr().out
    assert "embed written:" in out and "200 items x 384 dims" in out

    path = small_catalog / "embeddings" / "all-minilm-l6-v2.parquet"
    assert pq.read_metadata(path).num_rows == 200
    on_disk = json.loads(
        (small_catalog / "embeddings" / "all-minilm-l6-v2.manifest.json").read_text()
    )
    assert on_disk == manifest and manifest["dataset"] == "beauty"
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{small_catalog / 'mlflow.db'}").get_run(
        manifest["mlflow_run_id"]
    )
    assert run.info.status == "FINISHED" and run.data.metrics["items_per_s"] > 0
    assert run.data.params["rows_per_call"] == "128"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "embed")}
    assert {"embed/ray_data_stats.txt", "embed/all-minilm-l6-v2.manifest.json"} <= artifacts

    # Same inputs and config: nothing to do, not even a new MLflow run.
    again = job.main(job.parse_args(argv))
    assert "embed unchanged:" in capsys.readouterr().out
    assert again == manifest


def _cli(*args: str) -> subprocess.CompletedProcess:
    # Its own local Ray, never a cluster the developer's shell points at.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "jobs/embed_catalog.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_gpu_request_on_this_cpu_machine_fails_fast(small_catalog):
    proc = _cli(
        "--artifact-root", str(small_catalog), "--no-ingest", "--no-mlflow", "--num-gpus", "1"
    )
    assert proc.returncode == 2, proc.stderr
    assert "no GPU" in proc.stderr and "--num-gpus 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (small_catalog / "embeddings").exists()


def test_cli_bad_input_and_bad_flags(small_catalog, tmp_path):
    proc = _cli("--artifact-root", str(tmp_path / "nothing"), "--no-ingest", "--no-mlflow")
    assert (
        proc.returncode == 2 and "jobs/ingest.py" in proc.stderr and "Traceback" not in proc.stderr
    )
    proc = _cli(
        "--artifact-root",
        str(small_catalog),
        "--no-ingest",
        "--no-mlflow",
        "--template",
        "{title} {color}",
    )
    assert (
        proc.returncode == 2 and "field 'color'" in proc.stderr and "items.parquet" in proc.stderr
    )
    proc = _cli("--artifact-root", str(small_catalog), "--no-ingest", "--backend", "hf")
    assert proc.returncode != 0 and "needs --model" in proc.stderr
    proc = _cli("--artifact-root", str(small_catalog), "--no-ingest", "--pooling", "cls")
    assert (
        proc.returncode != 0
        and "--pooling does not apply to --backend sentence-transformers" in proc.stderr
    )
