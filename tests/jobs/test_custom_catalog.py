"""A user's own catalog end to end, as the README's "Your own catalog" runs it:
jobs/ingest.py --custom spec.yaml -> embed (the packaged MiniLM) -> RQ-KMeans
SIDs -> a tiny TIGER registered in MLflow -> evaluate -> served over HTTP by
the registered bundle, answering with the shop's own ids. No raw-data folder
(SIDREC_DATA_DIR) anywhere: a dataset is what its artifact root holds.
Then the errors a user sees for a bad spec or bad files."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from sidrec.data import DataError
from sidrec.data.ingest import held_outputs

REPO = Path(__file__).resolve().parents[2]
TIGER_TINY = {
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "d_model": 32,
    "num_heads": 2,
    "head_dim": 16,
    "ffn_dim": 64,
    "dropout": 0.1,
    "num_user_tokens": 50,
    "max_history": 20,
}


def _shop_module():
    spec = importlib.util.spec_from_file_location(
        "custom_shop", Path(__file__).with_name("custom_shop.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_shop = _shop_module().write_shop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_raw_data_dir(monkeypatch):
    """Your own catalog never needs the public datasets' folder."""
    monkeypatch.delenv("SIDREC_DATA_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run(load_job, name: str, *argv: str):
    job = load_job(name)
    return job.main(job.parse_args(list(argv)))


@pytest.mark.slow
def test_own_catalog_from_ingest_to_http(tmp_path, ray_session, load_job):
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    spec = write_shop(tmp_path / "shop-files", num_items=300, num_users=300)
    root = tmp_path / "artifacts" / "shop"
    at = ["--artifact-root", str(root)]  # no --dataset: the root says "shop"

    manifest = run(load_job, "ingest", "--custom", str(spec), *at)
    assert manifest["dataset"] == "shop" and manifest["counts"]["items"] == 300

    run(load_job, "embed_catalog", *at, "--num-actors", "1", "--no-progress")
    embeddings = root / "embeddings" / "all-minilm-l6-v2.parquet"
    assert pq.read_metadata(embeddings).num_rows == 300

    sids = run(load_job, "train_rqkmeans", *at, "--codebook-size", "8").sids_path
    assert sids.parent == root / "sids"

    result = run(
        load_job, "train_recommender", *at, "--model", "tiger", "--sids", str(sids),
        "--arch", json.dumps(TIGER_TINY), "--epochs", "2", "--batch-size", "64",
        "--alias", "ci",
    )  # fmt: skip
    assert result["registered"].startswith("models:/sidrec-tiger-shop")

    metrics = run(load_job, "evaluate", *at, "--model", "itemknn")
    assert metrics["count"] == 300

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        app = AppArgs(
            model_uri="models:/sidrec-tiger-shop@ci",
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            num_cpus=0.5,
        )
        serve.run(build_app(app), name="shop", route_prefix="/shop")
        url = f"http://127.0.0.1:{port}/shop"
        history = ["SKU-0000", "SKU-0005", "SKU-0010"]  # three Kitchen items
        r = requests.post(
            f"{url}/v1/recommend",
            json={"history": history, "k": 5, "exclude_seen": True},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"]["name"] == "sidrec-tiger-shop" and body["history_used"] == 3
        assert len(body["items"]) == 5
        for item in body["items"]:
            assert item["item_id"].startswith("SKU-") and item["item_id"] not in history
            assert item["title"] and len(item["sid"]) >= 3
        detail = requests.get(f"{url}/v1/items/SKU-0003", timeout=10).json()
        assert detail["title"].endswith(" 3") and detail["path"][0] == "Books"
    finally:
        serve.shutdown()


def test_csv_jsonl_and_parquet_give_the_same_catalog(tmp_path, load_job):
    roots = []
    for fmt in ("jsonl+csv", "parquet"):
        spec = write_shop(tmp_path / fmt, num_items=60, num_users=40, fmt=fmt)
        roots.append(tmp_path / f"art-{fmt}")
        run(
            load_job,
            "ingest",
            "--custom",
            str(spec),
            "--artifact-root",
            str(roots[-1]),
            "--no-mlflow",
        )
    for name in ("catalog/items.parquet", "catalog/interactions.parquet", "splits/test.parquet"):
        assert pq.read_table(roots[0] / name).equals(pq.read_table(roots[1] / name)), name


def test_a_job_without_an_ingest_says_how_to_ingest(tmp_path):
    proc = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--dataset", "shop",
         "--artifact-root", str(tmp_path / "empty"), "--no-mlflow"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "jobs/ingest.py --dataset shop --custom" in proc.stderr
    assert "SIDREC_DATA_DIR" not in proc.stderr  # no raw-data folder is asked for


def test_a_root_holding_another_dataset_is_refused_by_name(tmp_path, load_job):
    spec = write_shop(tmp_path / "files", num_items=30, num_users=20)
    root = tmp_path / "art"
    run(load_job, "ingest", "--custom", str(spec), "--artifact-root", str(root), "--no-mlflow")
    with pytest.raises(DataError, match="holds dataset 'shop', not 'beauty'"):
        run(
            load_job, "evaluate", "--dataset", "beauty", "--artifact-root", str(root), "--no-mlflow"
        )


def _break(folder: Path, file: str, old: str, new: str) -> None:
    path = folder / file
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize(
    ("breakage", "file", "expect"),
    [
        (("spec.yaml", "title: name", "title: nom"), "items.jsonl", "field 'nom': column 'nom' not found"),
        (("items.jsonl", '"sku": "SKU-0001"', '"sku": "SKU-0000"'), "items.jsonl", "'SKU-0000' appears twice"),
        (("interactions.csv", '"ts"\n', '"ts"\n"user-0","SKU-9999",1\n'), "interactions.csv", "'SKU-9999' is not in"),
        (("interactions.csv", "1700000000", "yesterday"), "interactions.csv", "field 'ts': timestamps must be"),
        (("spec.yaml", "timestamp: ts", "timestamp: 3"), "spec.yaml", "field 'timestamp'"),
        (("spec.yaml", "name: shop", "name: beauty"), "spec.yaml", "public dataset's name"),
        (("spec.yaml", "item_id: sku", "item_id: sku\ncolour: red"), "spec.yaml", "colour"),
    ],
)  # fmt: skip
def test_bad_specs_and_files_name_the_file_and_field(tmp_path, load_job, breakage, file, expect):
    folder = tmp_path / "files"
    spec = write_shop(folder, num_items=30, num_users=20)
    root = tmp_path / "art"
    run(load_job, "ingest", "--custom", str(spec), "--artifact-root", str(root), "--no-mlflow")
    before = held_outputs(root)
    _break(folder, *breakage)
    with pytest.raises(DataError) as err:
        run(load_job, "ingest", "--custom", str(spec), "--artifact-root", str(root),
            "--no-mlflow", "--force")  # fmt: skip
    assert file in str(err.value) and expect in str(err.value), str(err.value)
    # Writes are atomic: the earlier catalog is still whole.
    assert held_outputs(root) == before


def test_an_empty_catalog_is_named(tmp_path, load_job):
    folder = tmp_path / "files"
    spec = write_shop(folder, num_items=30, num_users=20)
    (folder / "items.jsonl").write_text("")
    with pytest.raises(DataError) as err:
        run(
            load_job,
            "ingest",
            "--custom",
            str(spec),
            "--artifact-root",
            str(tmp_path / "a"),
            "--no-mlflow",
        )
    assert "items.jsonl" in str(err.value), str(err.value)
    assert not (tmp_path / "a" / "catalog").exists()
