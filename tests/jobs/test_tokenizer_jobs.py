"""jobs/train_{rqvae,hidvae,rqkmeans}.py end to end on the real Beauty catalog
(12,101 items; cheap TF-IDF/SVD text embeddings stand in for the embedding
stage), with a real MLflow store in a temp dir: SID tables, manifests, the
registry, re-runs, and the errors a user sees for bad inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sidrec.data import DataError
from sidrec.data.sids import read_sid_table

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ITEMS = 12101
TINY = [
    "--set",
    "hidden_dims=64",
    "--set",
    "latent_dim=16",
    "--set",
    "lr=3e-3",
    "--set",
    "kmeans_iters=10",
    "--codebook-size",
    "32",
    "--batch-size",
    "512",
]


def _write_text_embeddings(texts: list[str], path: Path, dim: int = 48) -> np.ndarray:
    """Unit-norm TF-IDF/SVD vectors as the embedding stage's parquet."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(texts)
    vectors = TruncatedSVD(dim, random_state=0).fit_transform(tfidf).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(np.arange(len(texts), dtype=np.int32)),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            }
        ),
        path,
    )
    return vectors


@pytest.fixture(scope="module")
def root(tmp_path_factory, beauty_root) -> Path:
    """A private copy of the ingested Beauty root with embeddings/tfidf.parquet."""
    out = tmp_path_factory.mktemp("tok-jobs") / "beauty"
    shutil.copytree(beauty_root, out)
    texts = pq.read_table(out / "catalog" / "items.parquet").column("text").to_pylist()
    _write_text_embeddings(texts, out / "embeddings" / "tfidf.parquet")
    return out


def _args(job, root: Path, data_dir: Path, *extra: str):
    return job.parse_args(
        ["--dataset", "beauty", "--data-dir", str(data_dir), "--artifact-root", str(root), *extra]
    )


def _client(root: Path):
    import mlflow

    return mlflow.MlflowClient(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        registry_uri=f"sqlite:///{root / 'mlflow.db'}",
    )


@pytest.fixture(autouse=True)
def _fresh_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, which
    sidrec.tracking then takes for a user's server: drop it between tests so
    each test's store is the artifact root's own."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_rqvae_job_writes_registers_and_skips_a_rerun(root, data_dir, load_job):
    job = load_job("train_rqvae")
    result = job.main(_args(job, root, data_dir, *TINY, "--epochs", "2"))
    assert not result.skipped
    assert result.sids_path.parent == root / "sids"

    table = read_sid_table(result.sids_path, num_items=ITEMS)
    assert table.codes.shape == (ITEMS, 3) and table.codes.max() < 32
    assert table.codebook_sizes == [32, 32, 32]
    # With the disambiguation code every item has its own SID; it is there
    # only when something collides.
    assert len(np.unique(table.full_codes(), axis=0)) == ITEMS
    assert (table.disambig.max() > 0) == (result.metrics["collision_rate"] > 0)
    # Every SID reads as a category path: Beauty items all have a level-0 tag.
    assert all(row[0] for row in table.tags)

    manifest = table.meta
    assert manifest["learner"] == "rqvae" and manifest["encoder"] == "tfidf"
    assert manifest["config"]["codebook_size"] == 32
    assert {Path(r["path"]).name for r in manifest["inputs"]} == {"tfidf.parquet", "items.parquet"}
    assert all(len(r["sha256"]) == 64 for r in manifest["inputs"])
    assert manifest["metrics"]["collision_rate"] == result.metrics["collision_rate"]

    client = _client(root)
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.data.params["learner"] == "rqvae"
    history = client.get_metric_history(run.info.run_id, "collision_rate")
    assert [m.step for m in history] == [0, 1]  # one point per epoch, from the loop
    assert "utilization/level_2" in run.data.metrics and "tag_purity/level_0" in run.data.metrics
    registered = manifest["registered_model"]
    assert registered["name"] == "sidrec-tokenizer-rqvae-beauty"
    version = client.get_model_version_by_alias(registered["name"], "candidate")
    assert str(version.version) == registered["version"] and version.run_id == run.info.run_id

    # The registered tokenizer rebuilds and gives the table's codes back.
    from sidrec import tracking
    from sidrec.data.embeddings import load_embeddings
    from sidrec.tokenizers.pipeline import load_tokenizer

    tracking.configure(root)
    folder = tracking.download_model("models:/sidrec-tokenizer-rqvae-beauty@candidate")
    assert (folder / result.sids_path.name).is_file()
    _, model = load_tokenizer(folder)
    x = torch.as_tensor(load_embeddings(root / "embeddings" / "tfidf.parquet"))
    np.testing.assert_array_equal(model.codes(x[:500]).numpy(), table.codes[:500])

    again = job.main(_args(job, root, data_dir, *TINY, "--epochs", "2"))
    assert again.skipped and again.sids_path == result.sids_path


@pytest.mark.slow
def test_hidvae_job_reports_tag_accuracy_and_the_ablation_is_one_flag(root, data_dir, load_job):
    job = load_job("train_hidvae")
    full = job.main(_args(job, root, data_dir, *TINY, "--epochs", "2", "--no-mlflow"))
    for level in range(3):
        assert 0 <= full.metrics[f"tag_acc/level_{level}"] <= 1
    assert full.metrics["tag_acc/level_0"] > 0.5  # 6 classes; majority is 31.5%
    table = read_sid_table(full.sids_path, num_items=ITEMS)
    # Level-2 text is empty exactly where the SID prefix's items have no level-2 tag.
    assert any(row[2] for row in table.tags)
    assert table.meta["config"]["unique_weight"] == 8.0  # the tuned preset
    assert table.meta["config"]["collision_batches"] is True
    paper = job.build_config(_args(job, root, data_dir, *TINY, "--preset", "paper"))
    assert (paper.unique_weight, paper.collision_batches, paper.lr_schedule) == (
        2.0,
        False,
        "constant",
    )

    ablation = job.main(
        _args(
            job, root, data_dir, *TINY, "--epochs", "2", "--no-mlflow", "--set", "unique_weight=0"
        )
    )
    assert ablation.sids_path != full.sids_path  # the config hash names the run
    assert ablation.metrics["train/unique_loss"] == 0.0


@pytest.mark.slow
def test_rqkmeans_job_logs_each_level(root, data_dir, load_job):
    # In-process: the Ray Train path of the loops (and MLflow from a Ray
    # worker) is tested in tests/sidrec/tokenizers/test_train.py.
    job = load_job("train_rqkmeans")
    result = job.main(
        _args(job, root, data_dir, "--codebook-size", "32", "--set", "kmeans_iters=10")
    )
    table = read_sid_table(result.sids_path, num_items=ITEMS)
    assert table.codes.shape == (ITEMS, 3)
    manifest = table.meta
    assert manifest["learner"] == "rqkmeans" and manifest["num_workers"] == 0
    client = _client(root)
    history = client.get_metric_history(manifest["mlflow_run_id"], "collision_rate")
    assert [m.step for m in history] == [0, 1, 2]  # one point per level
    rates = [m.value for m in history]
    assert rates == sorted(rates, reverse=True)
    assert client.get_registered_model("sidrec-tokenizer-rqkmeans-beauty") is not None


def _embeddings_like(root: Path, path: Path, mutate) -> Path:
    table = pq.read_table(root / "embeddings" / "tfidf.parquet")
    rows = [list(v) for v in table.column("embedding").to_pylist()]
    mutate(rows)
    pq.write_table(
        pa.table(
            {
                "item_id": table.column("item_id"),
                "embedding": pa.array(rows, pa.list_(pa.float32())),
            }
        ),
        path,
    )
    return path


def test_bad_inputs_get_errors_that_name_the_field(root, data_dir, load_job, tmp_path):
    job = load_job("train_hidvae")
    run = lambda *extra: job.main(_args(job, root, data_dir, "--no-mlflow", *TINY, *extra))  # noqa: E731

    def nan(rows):
        rows[17][3] = float("nan")

    with pytest.raises(DataError, match="NaN") as err:
        run("--embeddings", str(_embeddings_like(root, tmp_path / "nan.parquet", nan)))
    assert err.value.row == 17 and err.value.field == "embedding"

    def ragged(rows):
        rows[5] = rows[5][:-1]

    with pytest.raises(DataError, match="dimensions disagree") as err:
        run("--embeddings", str(_embeddings_like(root, tmp_path / "ragged.parquet", ragged)))
    assert err.value.row == 5

    with pytest.raises(ValueError, match="codebook_size=20000 is larger than the catalog"):
        run("--codebook-size", "20000")

    # Beauty paths stop at 5 steps: a 6th supervised level has no tags at all.
    with pytest.raises(DataError, match="no item has a level-5 tag") as err:
        run("--levels", "6")
    assert err.value.field == "categories"

    # Tags for only some items are fine (masked), tags pointing outside the catalog are not.
    tags = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"item_id": [0, ITEMS + 3], "tags": [["A"], ["B"]]}), tags)
    with pytest.raises(DataError, match="outside the catalog") as err:
        run("--tags", str(tags))
    assert err.value.field == "item_id"


def test_embeddings_folder_must_hold_exactly_one_file(tmp_path, root):
    from sidrec.tokenizers.pipeline import find_embeddings

    assert find_embeddings(root, None).name == "tfidf.parquet"
    with pytest.raises(DataError, match="no embeddings"):
        find_embeddings(tmp_path, None)
    (tmp_path / "embeddings").mkdir()
    for name in ("a.parquet", "b.parquet"):
        (tmp_path / "embeddings" / name).write_bytes(b"")
    with pytest.raises(DataError, match="several embeddings"):
        find_embeddings(tmp_path, None)


def test_cli_error_is_one_line_and_exit_code_2(root, data_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "jobs/train_rqvae.py",
            "--dataset",
            "beauty",
            "--data-dir",
            str(data_dir),
            "--artifact-root",
            str(root),
            "--no-mlflow",
            "--codebook-size",
            "20000",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "codebook_size=20000" in proc.stderr and "Traceback" not in proc.stderr
