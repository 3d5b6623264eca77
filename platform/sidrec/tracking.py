"""MLflow helpers: one tracking store per artifact root, one experiment per dataset.

The tracking URI is `MLFLOW_TRACKING_URI` when set (a tracking server on a
cluster), else a SQLite file inside the artifact root: the registry needs a
database and MLflow's file store is gone since 3.13 (docs/ARCHITECTURE.md, Ray pitfalls).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "tracking_uri",
    "configure",
    "use_store",
    "experiment_name",
    "start_run",
    "log_params",
    "log_metrics",
    "log_metric_batch",
    "log_artifacts",
    "metric_key",
    "flatten",
    "register_model",
    "set_alias",
    "version_for_alias",
    "download_model",
]

# Offline machines: no telemetry calls out, no pip lookups when logging models.
_OFFLINE_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
}


def tracking_uri(artifact_root: str | os.PathLike) -> str:
    explicit = os.environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        return explicit
    root = Path(artifact_root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def configure(artifact_root: str | os.PathLike) -> str:
    """Point MLflow at this artifact root's store; returns the URI used."""
    for name, value in _OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = tracking_uri(artifact_root)
    use_store(uri)
    return uri


def use_store(uri: str) -> None:
    """Point this process's MLflow client (tracking and registry) at `uri`.

    mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; that is undone, or
    the next artifact root (or a Ray job started from this process) would take
    this store for a user's server."""
    import mlflow  # imported late: ~1 s, and stages that never log should not pay it

    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if user_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_uri


def experiment_name(dataset: str) -> str:
    return f"sidrec-{dataset}"


@contextmanager
def start_run(
    artifact_root: str | os.PathLike,
    dataset: str,
    run_name: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """An MLflow run in the dataset's experiment; artifacts under the root's mlruns/."""
    uri = configure(artifact_root)
    import mlflow

    name = experiment_name(dataset)
    if mlflow.get_experiment_by_name(name) is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (Path(artifact_root).resolve() / "mlruns").as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a concurrent run
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=run_name, tags=dict(tags or {})) as run:
        if params:
            log_params(params)
        yield run


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    flat = {k: v for k, v in flatten(params).items()}
    # MLflow caps a param value at 6000 chars; long lists are still worth a prefix.
    mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})


def flatten(value: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested configs as MLflow param / metric keys."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out.update(flatten(item, sep, f"{name}{sep}"))
        else:
            out[name] = item
    return out


def metric_key(name: str) -> str:
    """`recall@10` -> `recall_at_10`: MLflow keys allow only [\\w./ -]."""
    return re.sub(r"[^\w./ -]", "_", name.replace("@", "_at_"))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    clean = {
        metric_key(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and math.isfinite(float(v))
    }
    mlflow.log_metrics(clean, step=step)


def log_metric_batch(
    client: Any, run_id: str, metrics: Mapping[str, Any], step: int, skip: Iterable[str] = ()
) -> None:
    """The numeric, finite values of `metrics` into `run_id` at `step`, in batches of
    1000 (`log_batch`'s limit: one SQLite transaction each, not one per metric),
    keys cleaned by `metric_key`. `client`: an `mlflow.MlflowClient`."""
    import time

    from mlflow.entities import Metric

    skipped = set(skip)
    now = int(time.time() * 1000)
    batch = [
        Metric(metric_key(k), float(v), now, step)
        for k, v in metrics.items()
        if k not in skipped
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    ]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i : i + 1000])


def log_artifacts(folder: str | os.PathLike, artifact_path: str) -> None:
    """A folder's files into the active run, under `artifact_path`."""
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def register_model(run_id: str, artifact_path: str, name: str, alias: str | None = None) -> str:
    """Register the run's artifact folder `artifact_path` as a new version of `name`.

    Any folder works, not only an MLflow-flavoured model: our serving bundles
    (weights, SID table, transition tables, item metadata) are plain files, and
    `mlflow.register_model` in MLflow 3 insists on a LoggedModel.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id).version
    if alias:
        set_alias(name, alias, version)
    return str(version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


def download_model(uri: str, dst: str | os.PathLike | None = None) -> Path:
    """Files of a registered version, e.g. `models:/sidrec-tiger-beauty@prod`."""
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=None if dst is None else str(dst)
        )
    )


def version_for_alias(name: str, alias: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(name, alias).version)
