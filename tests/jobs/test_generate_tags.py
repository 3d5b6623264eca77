"""jobs/generate_tags.py end to end: real local Ray, MiniLM retrieval, a tiny random LM,
real MLflow, the first 100 real Beauty items; and bad input named by the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from sidrec.tokenizers.train import load_tags

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIMIT = 100


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    path = REPO / "tests" / "sidrec" / "tagging" / "tiny_lm.py"
    spec = importlib.util.spec_from_file_location("tagging_tiny_lm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def catalog_root(tmp_path, beauty_root) -> Path:
    """An artifact root holding the whole ingested Beauty catalog (and nothing else)."""
    root = tmp_path / "art"
    (root / "catalog").mkdir(parents=True)
    pq.write_table(
        pq.read_table(beauty_root / "catalog" / "items.parquet"), root / "catalog" / "items.parquet"
    )
    return root


@pytest.fixture
def own_tracking_store():
    """Start without MLFLOW_TRACKING_URI and leave none behind (see test_embed_job.py)."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def test_main_tags_first_items_logs_and_is_idempotent(
    catalog_root, tiny_lm, ray_session, load_job, capsys, own_tracking_store
):
    job = load_job("generate_tags")
    argv = [
        "--dataset", "beauty", "--artifact-root", str(catalog_root), "--no-ingest",
        "--no-progress", "--lm", str(tiny_lm), "--levels", "2", "--top-k", "3",
        "--rows-per-call", "50", "--limit", str(LIMIT),
    ]  # fmt: skip
    manifest = job.main(job.parse_args(argv))
    assert f"tags written: {catalog_root / 'tags' / 'tags.parquet'} ({LIMIT} items" in (
        capsys.readouterr().out
    )
    table = pq.read_table(catalog_root / "tags" / "tags.parquet")
    assert table.column("item_id").to_pylist() == list(range(LIMIT))
    on_disk = json.loads((catalog_root / "tags" / "tags.manifest.json").read_text())
    assert (
        on_disk == manifest and manifest["config"]["template"] == "Title: {title}\nBrand: {brand}"
    )
    assert manifest["output"]["sha256"] and len(manifest["agreement_with_catalog"]) == 2
    # HiD-VAE's reader takes the file as is; items past --limit are untagged, not wrong.
    num_items = pq.read_metadata(catalog_root / "catalog" / "items.parquet").num_rows
    tags = load_tags(catalog_root / "tags" / "tags.parquet", num_items, levels=2, required=True)
    assert (tags.ids[:LIMIT, 0] >= 0).all() and (tags.ids[LIMIT:] == -1).all()
    truth = pq.read_table(catalog_root / "catalog" / "items.parquet").column("categories")
    level0 = {p[0] for p in truth.to_pylist() if p}
    assert set(tags.keys[0]) <= level0

    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{catalog_root / 'mlflow.db'}").get_run(
        manifest["mlflow_run_id"]
    )
    assert run.info.status == "FINISHED" and run.data.metrics["items"] == LIMIT
    assert run.data.params["top_k"] == "3" and "agreement_level0" in run.data.metrics

    again = job.main(job.parse_args(argv))
    assert "tags unchanged:" in capsys.readouterr().out and again == manifest


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "jobs/generate_tags.py", "--no-ingest", "--no-mlflow", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_names_bad_input(catalog_root, tiny_lm, tmp_path):
    proc = _cli("--artifact-root", str(catalog_root))
    assert proc.returncode != 0 and "--lm is required" in proc.stderr

    proc = _cli("--artifact-root", str(catalog_root), "--lm", str(tiny_lm),
                "--template", "{title} {color}")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "field 'color'" in proc.stderr and "items.parquet" in proc.stderr

    taxonomy = tmp_path / "pool.yaml"
    taxonomy.write_text("levels:\n  - [Makeup, Skin Care]\n  - []\n")
    proc = _cli("--artifact-root", str(catalog_root), "--lm", str(tiny_lm),
                "--taxonomy", str(taxonomy), "--levels", "2")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(taxonomy) in proc.stderr and "no tag at level 1" in proc.stderr
    assert not (catalog_root / "tags").exists()
