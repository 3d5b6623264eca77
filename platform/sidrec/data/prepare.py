"""Ingest a dataset if (and only if) its canonical artifacts are missing or stale."""

from __future__ import annotations

import logging
from pathlib import Path

from sidrec import tracking
from sidrec.artifacts import MANIFEST_NAME, file_record
from sidrec.data._custom import CustomSpec, load_custom
from sidrec.data._errors import DataError
from sidrec.data.datasets import DATASETS, load_dataset
from sidrec.data.ingest import IngestConfig, IngestResult, existing_outputs, fingerprint, ingest_raw
from sidrec.data.locate import resolve_data_dir

__all__ = ["ensure_ingested"]


def _raw_data_given(data_dir) -> bool:
    import os

    from sidrec.data.locate import ENV_DATA_DIR

    return data_dir not in (None, "") or bool(os.environ.get(ENV_DATA_DIR))

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

    With `track`, the run is an MLflow run in the dataset's experiment and its
    id goes into the manifest.
    """
    root = Path(artifact_root)
    # A dataset is what its artifact root holds: a custom catalog, or a public one
    # ingested before, is used as it is when there is no raw data to compare with.
    if custom is None and (dataset not in DATASETS or not _raw_data_given(data_dir)):
        held = existing_outputs(root, None)
        if held is not None:
            log.info("ingest: using the catalog already ingested under %s", root)
            return IngestResult(root, held, skipped=True)
        if dataset not in DATASETS:
            raise DataError(
                f"dataset {dataset!r} has no ingested catalog under this artifact root and is "
                f"not a public dataset ({', '.join(DATASETS)}); ingest it first: python "
                f"jobs/ingest.py --dataset {dataset} --custom spec.yaml --artifact-root {root}",
                file=root,
            )
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
