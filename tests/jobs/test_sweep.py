"""jobs/sweep.py end to end: a real Ray Tune sweep of HiD-VAE's β_unique x m on a real
Beauty subset (the first 3,000 items, TF-IDF/SVD text embeddings standing in for the
embedding stage), real local Ray, a real MLflow store, the static report, the best
config fed back to the real job, Train inside Tune, and the MLflow UI page of the
sweep rendered by headless Chromium."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "tune_spaces" / "hidvae_uniqueness.yaml"
SUBSET = 3000
# A model small enough for 2 CPUs; the grid itself is the shipped space's.
TINY = [
    "--set", "epochs=3",
    "--set", "hidden_dims=64",
    "--set", "latent_dim=16",
    "--set", "codebook_size=32",
    "--set", "batch_size=1024",
    "--set", "kmeans_iters=10",
]  # fmt: skip


def _write_text_embeddings(texts: list[str], path: Path, dim: int = 32) -> None:
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


@pytest.fixture(scope="module")
def subset_root(tmp_path_factory, beauty_root) -> Path:
    """An artifact root whose catalog is the first 3,000 real Beauty items (with
    their category paths, the HiD-VAE tags) and their text embeddings."""
    root = tmp_path_factory.mktemp("sweep") / "beauty"
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, SUBSET)
    (root / "catalog").mkdir(parents=True)
    pq.write_table(items, root / "catalog" / "items.parquet")
    _write_text_embeddings(items.column("text").to_pylist(), root / "embeddings" / "tfidf.parquet")
    return root


@pytest.fixture(scope="module")
def sweep(subset_root, data_dir, ray_session, load_job):
    job = load_job("sweep")
    args = job.parse_args(
        [
            "--space", str(SPACE),
            "--dataset", "beauty",
            "--data-dir", str(data_dir),
            "--artifact-root", str(subset_root),
            "--name", "uniq-test",
            "--no-ingest",
            *TINY,
        ]
    )  # fmt: skip
    return job.main(args)


def _client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        registry_uri=f"sqlite:///{root / 'mlflow.db'}",
    )


def test_sweep_runs_every_grid_point_with_asha(sweep):
    trials = sweep.trials
    assert len(trials) == 6  # 3 β_unique x 2 m, the shipped grid
    pairs = set(zip(trials["param/unique_weight"], trials["param/unique_margin"], strict=True))
    assert pairs == {(w, m) for w in (0.0, 2.0, 8.0) for m in (0.5, 0.9)}
    assert set(trials["status"]) <= {"COMPLETED", "STOPPED (ASHA)"}
    assert trials["epochs"].between(1, 3).all()  # ASHA's max_t is the base's epochs
    assert trials["metric"].between(0, 1).all()
    assert list(trials["metric"]) == sorted(trials["metric"])  # best (min) first
    assert sweep.max_concurrent == 2  # 2 CPUs, one CPU per in-process trial
    # Without the uniqueness loss the margin m plays no part: same seed, same codes.
    no_unique = trials[trials["param/unique_weight"] == 0.0]
    full = no_unique[no_unique["epochs"] == 3]
    if len(full) == 2:
        assert full["collision_rate"].iloc[0] == full["collision_rate"].iloc[1]


def test_tune_leaves_its_results_and_tensorboard_files(sweep):
    folders = sorted(sweep.path.glob("trial-*"))
    assert len(folders) == 6
    for folder in folders:
        progress = pd.read_csv(folder / "progress.csv")
        assert "collision_rate" in progress.columns and len(progress) >= 1
        assert list(folder.glob("events.out.tfevents.*"))  # TensorBoard over the Tune folder
        assert list(folder.glob("checkpoint_*/state.pt"))


def test_every_trial_is_an_mlflow_run_in_one_experiment(sweep, subset_root):
    client = _client(subset_root)
    experiment = client.get_experiment_by_name("sidrec-beauty-sweep-hidvae")
    assert experiment.experiment_id == sweep.experiment_id
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 6
    by_trial = {r.data.tags["trial_id"]: r for r in runs}
    for row in sweep.trials.to_dict("records"):
        run = by_trial[row["trial_id"]]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["unique_weight"]) == row["param/unique_weight"]
        assert float(run.data.params["unique_margin"]) == row["param/unique_margin"]
        assert run.data.params["epochs"] == "3" and run.data.params["codebook_size"] == "32"
        history = client.get_metric_history(run.info.run_id, "collision_rate")
        assert [m.step for m in history] == list(range(row["epochs"]))  # one point per epoch
        assert history[-1].value == pytest.approx(row["metric"])
        files = {a.path for a in client.list_artifacts(run.info.run_id, "trial")}
        assert "trial/progress.csv" in files and any("checkpoint_" in f for f in files)
    best = by_trial[sweep.best["trial_id"]]
    assert best.data.tags.get("sweep_best") == "true"
    sweep_files = {a.path for a in client.list_artifacts(best.info.run_id, "sweep")}
    assert {"sweep/sweep_report.html", "sweep/best_config.yaml"} <= sweep_files


def test_report_and_best_config(sweep, load_job):
    folder = sweep.report.parent
    for name in ("metric_vs_params.png", "collision_vs_uniqueness.png", "learning_curves.png"):
        assert (folder / name).stat().st_size > 10_000, name
    page = sweep.report.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert sweep.best["trial_id"] in page and "mlflow ui --backend-store-uri" in page
    assert len(pd.read_csv(folder / "trials.csv")) == 6

    doc = yaml.safe_load(sweep.best_config.read_text())
    assert doc["trial_id"] == sweep.best["trial_id"] and doc["job"] == "jobs/train_hidvae.py"
    best = sweep.trials.iloc[0]
    assert doc["value"] == pytest.approx(best["metric"])
    job = load_job("train_hidvae")
    cfg = job.build_config(job.parse_args(["--dataset", "beauty", *doc["args"]]))
    assert cfg.unique_weight == best["param/unique_weight"]
    assert cfg.unique_margin == best["param/unique_margin"]
    assert (cfg.epochs, cfg.codebook_size, cfg.hidden_dims) == (3, 32, (64,))


def test_train_inside_tune(subset_root, ray_session, tmp_path):
    """One trial driving a 1-worker TorchTrainer (Train V2 inside Tune)."""
    from sidrec.tuning import SweepRequest, run_sweep

    space = tmp_path / "one.yaml"
    space.write_text(
        "stage: hidvae\nmetric: collision_rate\nbase: {epochs: 2}\n"
        "params:\n  unique_weight: {grid: [2.0]}\n"
    )
    result = run_sweep(
        SweepRequest(
            space=space,
            dataset="beauty",
            root=subset_root,
            name="train-in-tune",
            num_workers=1,
            overrides={"hidden_dims": (64,), "latent_dim": 16, "codebook_size": 32,
                       "batch_size": 1024, "kmeans_iters": 10},
        )
    )  # fmt: skip
    assert result.max_concurrent == 1  # the worker's CPU + the driver's sliver of another
    row = result.trials.iloc[0]
    assert row["epochs"] == 2 and row["status"] == "COMPLETED"
    progress = pd.read_csv(next(result.path.glob("trial-*")) / "progress.csv")
    # TuneReportCallback forwards each worker report with the Train checkpoint's path.
    assert progress["checkpoint_path"].str.contains(f"train-{row['trial_id']}").all()
    assert (result.path / "train" / f"train-{row['trial_id']}").is_dir()


def test_a_bad_space_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: hidvae\nparams:\n  unique_margin: {uniform: [0.5, 1.5]}\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "sweep.py"), "--space", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"error: {bad}: key 'params.unique_margin'" in proc.stderr


# ----------------------------------------------------------------------------
# The MLflow UI page of the sweep, as a user sees it, in headless Chromium
# ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail(
        "headless Chromium is not installed: `apt-get install -y chromium` "
        "(.ci/run installs it; the MLflow UI check needs a real browser)"
    )


@pytest.fixture(scope="module")
def mlflow_ui(sweep, subset_root):
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "ui",
            "--backend-store-uri", f"sqlite:///{subset_root / 'mlflow.db'}",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not come up on {url} (exit {server.poll()})")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _browse(url: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1600,1000", "--virtual-time-budget=20000", *flags, url],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip


def test_mlflow_ui_shows_the_sweep_runs(sweep, mlflow_ui, tmp_path):
    from PIL import Image

    page = f"{mlflow_ui}/#/experiments/{sweep.experiment_id}/runs"
    dom = _browse(page, "--dump-dom").stdout
    names = {f"{sweep.name}-{trial_id}" for trial_id in sweep.trials["trial_id"]}
    missing = sorted(n for n in names if n not in dom)
    assert not missing, f"runs not on the MLflow runs page: {missing}"

    shot = tmp_path / "mlflow_runs.png"
    _browse(page, f"--screenshot={shot}")
    image = Image.open(shot).convert("L")
    assert image.size == (1600, 1000)
    # A rendered page, not a blank one: many distinct grey levels.
    assert len(set(image.getdata())) > 20


def test_sasrec_sweep_selects_on_valid_and_feeds_the_job(
    beauty_root, ray_session, tmp_path, load_job
):
    """The recommender stage: 2 trials of a tiny SASRec on the first 300 Beauty users."""
    from sidrec.tuning import SweepRequest, run_sweep

    root = tmp_path / "beauty"
    shutil.copytree(beauty_root, root)
    space = tmp_path / "sasrec.yaml"
    space.write_text(
        "stage: sasrec\nmetric: best_valid/ndcg@10\nmode: max\nasha: {grace_period: 2}\n"
        "base: {epochs: 2, max_users: 300, d_model: 16, ffn_dim: 16, max_len: 20}\n"
        "params:\n  lr: {grid: [0.01, 0.0001]}\n"
    )
    result = run_sweep(SweepRequest(space=space, dataset="beauty", root=root, name="sas"))
    trials = result.trials
    assert len(trials) == 2 and (trials["epochs"] == 2).all()
    assert trials["metric"].between(0, 1).all()
    assert list(trials["metric"]) == sorted(trials["metric"], reverse=True)  # max first
    progress = pd.read_csv(next(result.path.glob("trial-*")) / "progress.csv")
    assert "valid/ndcg@10" in progress.columns  # selection on valid, every epoch
    assert not any(c.startswith("test/") for c in progress.columns)  # ASHA ends before test

    doc = yaml.safe_load(result.best_config.read_text())
    job = load_job("train_recommender")
    run, _ = job.run_config(job.parse_args(["--dataset", "beauty", *doc["args"]]))
    assert run.lr == result.best["params"]["lr"] and run.max_users == 300
    arch = (run.d_model, run.num_layers, run.num_heads, run.ffn_dim, run.dropout, run.max_len)
    assert arch == (16, 2, 1, 16, 0.5, 20) and run.loss == "ce"


# ----------------------------------------------------------------------------
# H2Rec and LAMIA stages: one tiny real sweep each
# ----------------------------------------------------------------------------


def _sid_helpers():
    import importlib.util

    path = REPO / "tests" / "sidrec" / "models" / "sid_helpers.py"
    spec = importlib.util.spec_from_file_location("sid_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_h2rec_sweep_chooses_among_sid_tables_and_feeds_the_job(
    beauty_root, ray_session, tmp_path, load_job
):
    """2 trials of a tiny H2Rec on the first 300 Beauty users, one per SID table
    shape (3 x 256 and 2 x 64 category SIDs), each given relative to the root."""
    from sidrec.tuning import SweepRequest, run_sweep

    root = tmp_path / "beauty"
    shutil.copytree(beauty_root, root)
    helpers = _sid_helpers()
    helpers.write_category_sids(root, "l3", sizes=(8, 64, 256))
    helpers.write_category_sids(root, "l2", sizes=(8, 64))
    space = tmp_path / "h2rec.yaml"
    space.write_text(
        "stage: h2rec\nmetric: best_valid/ndcg@10\nmode: max\nasha: {grace_period: 2}\n"
        "base: {epochs: 2, max_users: 300, d_model: 16, ffn_dim: 16, max_len: 20,\n"
        "       code_threshold: 1, beta: 0.5, batch_size: 128}\n"
        "params:\n  sids: {grid: [sids/l3.parquet, sids/l2.parquet]}\n"
    )
    result = run_sweep(SweepRequest(space=space, dataset="beauty", root=root, name="h2"))
    trials = result.trials
    assert len(trials) == 2 and (trials["epochs"] == 2).all()
    assert set(trials["param/sids"]) == {"sids/l3.parquet", "sids/l2.parquet"}
    assert trials["metric"].between(0, 1).all() and (trials["metric"] > 0).any()
    progress = pd.read_csv(next(result.path.glob("trial-*")) / "progress.csv")
    assert "valid/ndcg@10" in progress.columns and progress["loss"].notna().all()
    assert not any(c.startswith("test/") for c in progress.columns)

    doc = yaml.safe_load(result.best_config.read_text())
    job = load_job("train_recommender")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    run, _ = job.run_config(args)
    best_table = root / result.best["params"]["sids"]
    assert args.model == "h2rec" and run.sids == str(best_table.resolve())
    assert (run.beta, run.code_threshold, run.max_users, run.d_model) == (0.5, 1, 300, 16)


def test_tiger_sweep_trains_on_the_one_sid_table_and_feeds_the_job(
    beauty_root, ray_session, tmp_path, load_job
):
    """2 trials of a tiny TIGER on the first 200 Beauty users, 2 epochs each, on the
    one SID table under sids/ (no `sids` given: the stage finds it)."""
    from sidrec.tuning import SweepRequest, run_sweep

    root = tmp_path / "beauty"
    # Without the shared root's sids/: other tests (bundles, jobs) add their tables there.
    shutil.copytree(beauty_root, root)
    shutil.rmtree(root / "sids", ignore_errors=True)
    table = _sid_helpers().write_category_sids(root, "l3", sizes=(8, 64, 256))
    space = tmp_path / "tiger.yaml"
    space.write_text(
        "stage: tiger\nmetric: best_valid/ndcg@10\nmode: max\nasha: {grace_period: 2}\n"
        "base: {epochs: 2, max_users: 200, batch_size: 128, beam_width: 20, warmup_steps: 0,\n"
        "       num_encoder_layers: 1, num_decoder_layers: 1, d_model: 32, num_heads: 2,\n"
        "       head_dim: 16, ffn_dim: 64, num_user_tokens: 50}\n"
        "params:\n  lr: {grid: [0.003, 0.0001]}\n"
    )
    result = run_sweep(SweepRequest(space=space, dataset="beauty", root=root, name="tig"))
    trials = result.trials
    assert len(trials) == 2 and (trials["epochs"] == 2).all()
    assert trials["metric"].between(0, 1).all()
    progress = pd.read_csv(next(result.path.glob("trial-*")) / "progress.csv")
    assert "valid/ndcg@10" in progress.columns and progress["loss"].notna().all()
    assert not any(c.startswith("test/") for c in progress.columns)

    doc = yaml.safe_load(result.best_config.read_text())
    job = load_job("train_recommender")
    args = job.parse_args(["--dataset", "beauty", *doc["args"]])
    run, preset = job.run_config(args)
    assert args.model == "tiger" and preset == "tiger_small"
    assert run.sids == str(table.resolve()) and run.lr == result.best["params"]["lr"]
    assert (run.num_encoder_layers, run.d_model, run.head_dim, run.max_users) == (1, 32, 16, 200)


def test_lamia_sweep_reports_sid_metrics_every_epoch(beauty_root, ray_session, tmp_path, load_job):
    """2 trials (γ = 0, the w/o L_cl ablation, vs γ = 0.5) of a tiny MiniLM-backbone
    LAMIA on the first 300 Beauty items, 2 epochs each, SID metrics at each epoch."""
    from sidrec.tuning import SweepRequest, run_sweep

    root = tmp_path / "beauty"
    (root / "catalog").mkdir(parents=True)
    items = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, 300)
    pq.write_table(items, root / "catalog" / "items.parquet")
    space = tmp_path / "lamia.yaml"
    space.write_text(
        "stage: lamia\nmetric: collision_rate\nmode: min\nasha: {grace_period: 2}\n"
        "base: {preset: minilm_small, epochs: 2, train_items: 64, batch_size: 32,\n"
        "       codebook_size: 16, pca_dim: 16, kmeans_iters: 5, num_palette: 3,\n"
        "       backbone.decoder_dim: 64, backbone.decoder_ffn: 128,\n"
        "       backbone.decoder_layers: 1, backbone.max_content_tokens: 32,\n"
        "       backbone.max_answer_tokens: 12}\n"
        "params:\n  gamma: {grid: [0.0, 0.5]}\n"
    )
    result = run_sweep(SweepRequest(space=space, dataset="beauty", root=root, name="lam"))
    trials = result.trials
    assert len(trials) == 2 and (trials["epochs"] == 2).all()
    assert trials["metric"].between(0, 1).all()
    for folder in result.path.glob("trial-*"):
        progress = pd.read_csv(folder / "progress.csv")
        # One report per epoch, each with the SID table's metrics (3 positions).
        assert list(progress["epoch"]) == [0, 1]
        assert progress["collision_rate"].between(0, 1).all()
        assert progress["utilization/level_2"].between(0, 1).all()
        assert (progress["num_items"] == 300).all()
        # One run per trial (no re-run per epoch): both reports start at epoch 0.
        assert list(progress["start_epoch"]) == [0, 0]

    doc = yaml.safe_load(result.best_config.read_text())
    job = load_job("train_lamia")
    cfg = job.lamia_config(job.parse_args(["--dataset", "beauty", *doc["args"]]))
    assert cfg.gamma == result.best["params"]["gamma"]
    assert (cfg.epochs, cfg.codebook_size, cfg.num_palette, cfg.backbone.decoder_dim) == (
        2,
        16,
        3,
        64,
    )
