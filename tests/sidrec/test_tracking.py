"""MLflow helpers against a real SQLite store in a temp dir."""

from __future__ import annotations

import json
import os

import pytest

from sidrec import tracking


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "root"


def test_tracking_uri_defaults_to_sqlite_in_the_root(store, monkeypatch):
    assert tracking.tracking_uri(store) == f"sqlite:///{store.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking.tracking_uri(store) == "http://tracking:5000"


def test_run_logs_params_and_metrics_in_the_dataset_experiment(store):
    import mlflow

    with tracking.start_run(store, "beauty", "t", {"lr": 0.1, "model": {"layers": 4}}) as run:
        tracking.log_metrics({"recall@10": 0.5, "head/ndcg@5": 0.25, "bad": float("nan")})
    got = mlflow.MlflowClient().get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.1", "model.layers": "4"}
    assert got.data.metrics == {"recall_at_10": 0.5, "head/ndcg_at_5": 0.25}
    exp = mlflow.get_experiment(got.info.experiment_id)
    assert exp.name == "sidrec-beauty"
    assert (store / "mlflow.db").is_file()


def test_register_alias_and_download_a_bundle(store, tmp_path):
    import mlflow

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"d_model": 128}))
    with tracking.start_run(store, "beauty", "train") as run:
        mlflow.log_artifacts(str(bundle), artifact_path="model")
    first = tracking.register_model(run.info.run_id, "model", "sidrec-x-beauty", alias="prod")
    second = tracking.register_model(run.info.run_id, "model", "sidrec-x-beauty")
    assert (first, second) == ("1", "2")
    assert tracking.version_for_alias("sidrec-x-beauty", "prod") == "1"
    tracking.set_alias("sidrec-x-beauty", "prod", second)
    assert tracking.version_for_alias("sidrec-x-beauty", "prod") == "2"
    local = tracking.download_model("models:/sidrec-x-beauty@prod", tmp_path / "dl")
    assert json.loads((local / "config.json").read_text()) == {"d_model": 128}


def test_metric_key_keeps_allowed_characters():
    assert tracking.metric_key("exclude_seen/recall@20") == "exclude_seen/recall_at_20"
    assert tracking.metric_key("a b.c-d") == "a b.c-d"


def test_two_artifact_roots_in_one_process_keep_their_own_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = tracking.configure(tmp_path / "a")
    second = tracking.configure(tmp_path / "b")
    assert first.endswith("a/mlflow.db") and second.endswith("b/mlflow.db")


def test_use_store_does_not_export_the_uri(tmp_path, monkeypatch):
    import mlflow

    from sidrec import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    tracking.use_store(uri)
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
    assert "MLFLOW_TRACKING_URI" not in os.environ  # a later root or `ray start` keeps its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user-server:5000")
    tracking.use_store(uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://user-server:5000"
