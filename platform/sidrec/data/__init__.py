"""Datasets, ingest and the canonical artifacts (docs/ARCHITECTURE.md, stage 1).

from sidrec.data import ensure_ingested, load_split
ensure_ingested("beauty", "artifacts/beauty", data_dir="/path/to/datasets")
test = load_split("artifacts/beauty", "test")
"""

from sidrec.data._custom import CustomSpec, load_custom
from sidrec.data._errors import DataError
from sidrec.data._raw import RawDataset
from sidrec.data.catalog import (
    SplitData,
    load_items,
    load_split,
    train_item_counts,
    train_sequences,
)
from sidrec.data.datasets import DATASETS, DatasetSpec, load_dataset
from sidrec.data.ingest import IngestConfig, IngestOptions, IngestResult, Sequences
from sidrec.data.locate import ENV_DATA_DIR, resolve_data_dir
from sidrec.data.prepare import ensure_ingested

__all__ = [
    "CustomSpec",
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "ENV_DATA_DIR",
    "IngestConfig",
    "IngestOptions",
    "IngestResult",
    "RawDataset",
    "Sequences",
    "SplitData",
    "ensure_ingested",
    "load_custom",
    "load_dataset",
    "load_items",
    "load_split",
    "resolve_data_dir",
    "train_item_counts",
    "train_sequences",
]
