"""Ingest a dataset if (and only if) its canonical artifacts are missing or stale.

A dataset is what its artifact root holds: once catalog/ and splits/ are there
(a public dataset or your own, `jobs/ingest.py --custom SPEC`), every job reads
them without asking for raw data. The registry of public datasets (DATASETS)
only says how to ingest those; raw data is asked for only when ingest must run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sidrec import tracking
from sidrec.artifacts import MANIFEST_NAME, file_record
from sidrec.data._custom import CustomSpec, load_custom
from sidrec.data._errors import DataError
from sidrec.data.datasets import DATASETS, load_dataset
from sidrec.data.ingest import (
    IngestConfig,
    IngestResult,
    existing_outputs,
    fingerprint,
    held_outputs,
    ingest_raw,
)
from sidrec.data.locate import ENV_DATA_DIR, resolve_data_dir

__all__ = ["ensure_ingested"]

log = logging.getLogger(__name__)


def ensure_ingested(
    dataset: str,
    artifact_root: str | Path,
    data_dir: str | Path | None = None,
    kcore: int | None = None,
    max_history: int = 20,
    custom: CustomSpec | None = None,
    track: bool = True,
    force: bool = False,
) -> IngestResult:
    """Load the raw dataset and write catalog/ and splits/ unless an identical run
    (same inputs by content, same config) already left them intact.

    Without `custom`, an intact ingest already in `artifact_root` is used as it
    is unless `dataset` is a public one whose raw data is at hand (`data_dir`
    or $SIDREC_DATA_DIR); a root holding another dataset is refused by name.

    With `track`, the run is an MLflow run in the dataset's experiment and its
    id goes into the manifest.
    """
    root = Path(artifact_root)
    if custom is None and dataset not in DATASETS and force:
        raise DataError(
            f"re-ingesting your own catalog {dataset!r} needs its spec: "
            "python jobs/ingest.py --custom SPEC.yaml --force",
            file=root,
        )
    if custom is None and not force:
        held = _held_ingest(dataset, root, data_dir, kcore, max_history)
        if held is not None:
            log.info("ingest: using the %s catalog already in %s", dataset, root)
            return IngestResult(root, held, skipped=True)
    if custom is not None:
        raw = load_custom(custom)
        k = 0 if kcore is None else kcore
    else:
        raw = load_dataset(dataset, resolve_data_dir(data_dir))
        k = DATASETS[dataset].kcore if kcore is None else kcore
    cfg = IngestConfig(dataset=dataset, artifact_root=str(root), kcore=k, max_history=max_history)
    key = fingerprint(cfg, k, [file_record(p) for p in raw.input_files])
    existing = None if force else existing_outputs(root, key)
    if existing is not None:
        log.info("ingest: %s is up to date (fingerprint %s)", root, key[:12])
        return IngestResult(root, existing, skipped=True)
    if not track:
        return ingest_raw(raw, cfg, k, force=True)
    params = {"kcore": k, "max_history": max_history, "fingerprint": key}
    with tracking.start_run(root, dataset, f"ingest-{key[:8]}", params, {"stage": "ingest"}) as run:
        result = ingest_raw(raw, cfg, k, run_id=run.info.run_id, force=True)
        counts = result.manifest["counts"]
        tracking.log_metrics({k: v for k, v in counts.items() if isinstance(v, int)})
        tracking.log_metrics({f"split_{k}": v for k, v in counts["splits"].items()})
        import mlflow

        mlflow.log_artifact(str(root / "catalog" / MANIFEST_NAME), artifact_path="ingest")
    return result


def _held_ingest(
    dataset: str, root: Path, data_dir, kcore: int | None, max_history: int
) -> dict[str, Any] | None:
    """The intact ingest in `root` when it can stand without raw data, else None
    (ingest runs). A public dataset whose raw data is at hand is re-checked
    against it instead, so an edited raw file still triggers a re-ingest."""
    held = held_outputs(root)
    if held is not None and held.get("dataset") != dataset:
        raise DataError(
            f"this artifact root holds dataset {held.get('dataset')!r}, not {dataset!r}: "
            f"pass --dataset {held.get('dataset')} or another --artifact-root",
            file=root,
        )
    problem = "no complete ingest of dataset {dataset!r} here (catalog/ and splits/ with intact manifests)"
    if held is not None and not _same_config(held, kcore, max_history):
        # Asked for another k-core or history length: only a re-ingest gives it.
        config = held.get("config", {})
        problem = (
            f"the ingest here used kcore={config.get('kcore')}, "
            f"max_history={config.get('max_history')}, not kcore={kcore}, max_history={max_history}"
        )
        held = None
    if dataset in DATASETS and _raw_data_given(data_dir):
        return None
    if held is None and dataset not in DATASETS:
        raise DataError(
            f"{problem.format(dataset=dataset)}; ingest your catalog first: python jobs/ingest.py "
            f"--dataset {dataset} --custom SPEC.yaml --artifact-root {root} "
            f"(public datasets: {', '.join(DATASETS)})",
            file=root,
        )
    return held


def _same_config(manifest: dict[str, Any], kcore: int | None, max_history: int) -> bool:
    config = manifest.get("config", {})
    if config.get("max_history") != max_history:
        return False
    return kcore is None or config.get("kcore") == kcore


def _raw_data_given(data_dir) -> bool:
    return data_dir not in (None, "") or bool(os.environ.get(ENV_DATA_DIR))
