"""Raw dataset -> canonical catalog, interactions and leave-one-out splits.

Outputs (docs/ARCHITECTURE.md, "The pipeline and its artifacts"), under one artifact root:
  catalog/items.parquet, catalog/interactions.parquet, catalog/manifest.json
  splits/train.parquet, splits/valid.parquet, splits/test.parquet, splits/manifest.json

Splits are leave-one-out over each user's chronological sequence s[0..n-1]:
test predicts s[n-1] from s[:n-1], valid predicts s[n-2] from s[:n-2], and
train holds one row per earlier position t in 1..n-3 (every prefix, as TIGER
trains). Histories keep the most recent `max_history` items. Users with fewer
than 3 interactions cannot give a valid and a test item and go to train only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec.artifacts import (
    MANIFEST_NAME,
    file_record,
    library_versions,
    publish_dirs,
    read_manifest,
    sha256_file,
    sha256_json,
    staging_dir,
    utc_now,
    write_json_atomic,
)
from sidrec.data._errors import DataError
from sidrec.data._raw import RawDataset
from sidrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SPLIT_SCHEMA

__all__ = [
    "IngestConfig",
    "IngestOptions",
    "IngestResult",
    "Sequences",
    "build_splits",
    "existing_outputs",
    "fingerprint",
    "held_outputs",
    "ingest_raw",
    "kcore_mask",
]

log = logging.getLogger(__name__)

# Bump when the outputs for the same inputs and config would change.
INGEST_VERSION = 1
CATALOG_FILES = ("items.parquet", "interactions.parquet")
SPLIT_FILES = ("train.parquet", "valid.parquet", "test.parquet")


@dataclass(frozen=True)
class IngestConfig:
    # Registry name (beauty, yelp, ...) or "custom"; names the MLflow experiment too.
    dataset: str
    # Folder that receives catalog/ and splits/ for this dataset.
    artifact_root: str
    # Iterative k-core over users and items; 5 for the Amazon sets as TIGER and
    # S3-Rec do (a no-op on the shipped 5-core files). None = the dataset's default.
    kcore: int | None = None
    # Most recent items kept per history; 20 matches TIGER / HiD-VAE on Beauty.
    max_history: int = 20

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if self.kcore is not None and self.kcore < 0:
            raise ValueError(f"kcore must be >= 0, got {self.kcore}")


@dataclass(frozen=True)
class IngestOptions:
    """What `jobs/ingest.py --set FIELD=VALUE` tunes (IngestConfig without where and what)."""

    # Iterative k-core over users and items; none = the dataset's default (5 for
    # Amazon and Yelp as TIGER and S3-Rec, none for MovieLens).
    kcore: int | None = None
    # Most recent items kept per history; 20 matches TIGER / HiD-VAE on Beauty.
    max_history: int = 20

    def __post_init__(self) -> None:
        IngestConfig(dataset="", artifact_root="", kcore=self.kcore, max_history=self.max_history)


@dataclass
class IngestResult:
    artifact_root: Path
    manifest: dict[str, Any]
    skipped: bool  # True when an identical earlier run's outputs were kept


@dataclass
class Sequences:
    """Each user's items in chronological order, as flat arrays plus offsets.

    items: [n_interactions] dense item ids; offsets: [n_users + 1], so user u's
    sequence is items[offsets[u]:offsets[u + 1]].
    """

    items: np.ndarray
    offsets: np.ndarray

    def user(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1


def fingerprint(cfg: IngestConfig, kcore: int, inputs: list[dict[str, Any]]) -> str:
    """Identity of an ingest run: code version, config and input contents (not paths)."""
    config = {**asdict(cfg), "kcore": kcore}
    config.pop("artifact_root")
    hashes = sorted((Path(r["path"]).name, r["sha256"]) for r in inputs)
    return sha256_json({"version": INGEST_VERSION, "config": config, "inputs": hashes})


def ingest_raw(
    raw: RawDataset,
    cfg: IngestConfig,
    kcore: int,
    run_id: str | None = None,
    force: bool = False,
) -> IngestResult:
    """Filter, index, split and write `raw`; a no-op if the same run already exists."""
    root = Path(cfg.artifact_root)
    inputs = [file_record(p) for p in raw.input_files]
    key = fingerprint(cfg, kcore, inputs)
    existing = existing_outputs(root, key)
    if existing is not None and not force:
        log.info("ingest: %s already holds this dataset and config; nothing to do", root)
        return IngestResult(root, existing, skipped=True)

    users, items, timestamps, rows = _resolve_interactions(raw)
    keep = kcore_mask(users, items, kcore)
    tables, seqs, stats = _canonical_tables(raw, users, items, timestamps, rows, keep, kcore)
    splits = build_splits(seqs, cfg.max_history)
    manifest = _manifest(raw, cfg, kcore, key, inputs, stats, splits, run_id)
    _write(root, tables, splits, manifest)
    return IngestResult(root, read_manifest(root / "catalog"), skipped=False)


def existing_outputs(root: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a finished run with the same fingerprint whose files are intact."""
    manifest = held_outputs(root)
    if manifest is None or manifest.get("fingerprint") != key:
        return None
    return manifest


def held_outputs(root: Path) -> dict[str, Any] | None:
    """The manifest of the finished ingest in `root` whose files are intact, whatever
    its inputs were; None if there is none (or it was cut short or edited since)."""
    manifests = [read_manifest(Path(root) / sub) for sub in ("catalog", "splits")]
    if any(m is None for m in manifests):
        return None
    if manifests[0].get("fingerprint") != manifests[1].get("fingerprint"):
        return None  # catalog/ and splits/ from different runs
    for name, record in manifests[0].get("outputs", {}).items():
        path = Path(root) / name
        if not path.is_file() or sha256_file(path) != record["sha256"]:
            return None
    return manifests[0]


def _resolve_interactions(raw: RawDataset):
    """Map interactions onto catalog rows; fail on an empty side or an unknown item."""
    items_where = str(raw.items_file or raw.interactions_file)
    if raw.items.num_rows == 0:
        raise DataError("the item catalog is empty", file=items_where)
    if raw.interactions.num_rows == 0:
        raise DataError("there are no interactions", file=raw.interactions_file)
    source_ids = pd.Index(raw.items.column("source_id").to_pandas())
    if source_ids.has_duplicates:
        dup = source_ids[source_ids.duplicated()][0]
        raise DataError(
            f"item id {dup!r} appears more than once", file=items_where, field="source_id"
        )
    item_codes = source_ids.get_indexer(raw.interactions.column("item").to_pandas())
    rows = raw.interactions.column("row").to_numpy()
    unknown = np.flatnonzero(item_codes < 0)
    if len(unknown):
        first = unknown[0]
        bad = raw.interactions.column("item")[int(first)].as_py()
        raise DataError(
            f"item {bad!r} is not in the catalog ({len(unknown)} such interactions)",
            file=raw.interactions_file,
            line=int(rows[first]),
            field="item",
        )
    users, _ = pd.factorize(raw.interactions.column("user").to_pandas(), sort=False)
    timestamps = raw.interactions.column("timestamp").to_numpy().astype(np.int64)
    return users.astype(np.int64), item_codes.astype(np.int64), timestamps, rows


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Interactions kept by iterative k-core: every kept user and item has >= k of them."""
    keep = np.ones(len(users), dtype=bool)
    if k <= 1:
        return keep
    while True:
        user_counts = np.bincount(users[keep], minlength=users.max() + 1)
        item_counts = np.bincount(items[keep], minlength=items.max() + 1)
        drop = keep & ((user_counts[users] < k) | (item_counts[items] < k))
        if not drop.any():
            return keep
        keep &= ~drop


def _canonical_tables(raw, users, items, timestamps, rows, keep, kcore):
    """Dense ids, chronological order (stable tie-break on file order), Arrow tables."""
    raw_users = int(users.max()) + 1
    users, items, timestamps, rows = users[keep], items[keep], timestamps[keep], rows[keep]
    if len(users) == 0:
        raise DataError(
            f"{kcore}-core filtering removed every interaction", file=raw.interactions_file
        )
    # With k-core on, an item survives only through its interactions; without
    # it the whole catalog stays, cold items included (they can still be served).
    kept_items = np.unique(items) if kcore > 1 else np.arange(raw.items.num_rows)
    new_item = np.full(raw.items.num_rows, -1, dtype=np.int64)
    new_item[kept_items] = np.arange(len(kept_items))
    user_codes, _ = pd.factorize(users, sort=False)
    order = np.lexsort((rows, timestamps, user_codes))
    dense_users = user_codes[order].astype(np.int32)
    dense_items = new_item[items[order]].astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(dense_users))]).astype(np.int64)

    items_table = _items_table(raw.items.take(pa.array(kept_items)))
    interactions = pa.table(
        {
            "user_id": pa.array(dense_users, pa.int32()),
            "item_id": pa.array(dense_items, pa.int32()),
            "timestamp": pa.array(timestamps[order], pa.int64()),
        },
        schema=INTERACTIONS_SCHEMA,
    )
    stats = {
        "raw": {
            "users": raw_users,
            "items": raw.items.num_rows,
            "interactions": raw.interactions.num_rows,
        },
        "users": int(offsets.size - 1),
        "items": int(len(kept_items)),
        "interactions": int(len(dense_items)),
        "items_without_interactions": int(len(kept_items) - len(np.unique(dense_items))),
    }
    return (items_table, interactions), Sequences(dense_items, offsets), stats


def _items_table(raw_items: pa.Table) -> pa.Table:
    """Canonical columns first with their exact types, extra attributes as strings."""
    columns = {
        "item_id": pa.array(np.arange(raw_items.num_rows), pa.int32()),
        "source_id": raw_items.column("source_id").cast(pa.string()),
        "title": raw_items.column("title").cast(pa.string()).fill_null(""),
        "text": raw_items.column("text").cast(pa.string()).fill_null(""),
        "categories": raw_items.column("categories").cast(pa.list_(pa.string())),
    }
    for name in raw_items.column_names:
        if name not in columns:
            columns[name] = raw_items.column(name).cast(pa.string())
    fields = list(ITEMS_SCHEMA) + [pa.field(n, pa.string()) for n in list(columns)[5:]]
    return pa.table(columns, schema=pa.schema(fields))


def build_splits(seqs: Sequences, max_history: int) -> dict[str, pa.Table]:
    """Leave-one-out train/valid/test rows (see the module docstring)."""
    rows: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in ("train", "valid", "test")}

    def add(split: str, user: int, seq: np.ndarray, t: int) -> None:
        users, histories, targets = rows[split]
        users.append(user)
        histories.append(seq[max(0, t - max_history) : t])
        targets.append(seq[t])

    for user in range(seqs.num_users):
        seq = seqs.user(user)
        n = len(seq)
        last_train = n - 3 if n >= 3 else n - 1
        for t in range(1, last_train + 1):
            add("train", user, seq, t)
        if n >= 3:
            add("valid", user, seq, n - 2)
            add("test", user, seq, n - 1)
    return {split: _split_table(*cols) for split, cols in rows.items()}


def _split_table(users: list, histories: list, targets: list) -> pa.Table:
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int32, count=len(histories))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(histories).astype(np.int32) if histories else np.zeros(0, np.int32)
    return pa.table(
        {
            "user_id": pa.array(np.asarray(users, dtype=np.int32)),
            "history": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "target": pa.array(np.asarray(targets, dtype=np.int32)),
        },
        schema=SPLIT_SCHEMA,
    )


def _manifest(raw, cfg, kcore, key, inputs, stats, splits, run_id) -> dict[str, Any]:
    split_counts = {name: table.num_rows for name, table in splits.items()}
    return {
        "stage": "ingest",
        "dataset": cfg.dataset,
        "created_at": utc_now(),
        "fingerprint": key,
        "config": {**asdict(cfg), "kcore": kcore},
        "inputs": inputs,
        "order": (
            "chronological by timestamp, ties kept in file order"
            if raw.has_timestamps
            else "the source gives each user's items in chronological order without "
            "timestamps; timestamp = position within the user's sequence"
        ),
        "has_timestamps": raw.has_timestamps,
        "counts": {
            **stats,
            "splits": split_counts,
            "users_train_only": stats["users"] - split_counts["test"],
        },
        "notes": list(raw.notes),
        "mlflow_run_id": run_id,
        "versions": library_versions(),
        "outputs": {},
    }


def _write(root: Path, tables, splits: dict[str, pa.Table], manifest: dict[str, Any]) -> None:
    items_table, interactions = tables
    with staging_dir(root, "ingest") as staged:
        (staged / "catalog").mkdir()
        (staged / "splits").mkdir()
        pq.write_table(items_table, staged / "catalog" / "items.parquet")
        pq.write_table(interactions, staged / "catalog" / "interactions.parquet")
        for name, table in splits.items():
            pq.write_table(table, staged / "splits" / f"{name}.parquet")
        outputs = {
            f"{sub}/{f}": file_record(staged / sub / f)
            for sub, files in (("catalog", CATALOG_FILES), ("splits", SPLIT_FILES))
            for f in files
        }
        for record in outputs.values():
            record.pop("path")
        manifest = {**manifest, "outputs": outputs}
        for sub in ("catalog", "splits"):
            write_json_atomic(staged / sub / MANIFEST_NAME, manifest)
        publish_dirs(staged, root, ["catalog", "splits"])
