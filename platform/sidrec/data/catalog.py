"""Read the canonical artifacts that ingest wrote (catalog/, splits/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec.data._errors import DataError
from sidrec.data.ingest import Sequences
from sidrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SPLIT_SCHEMA, check_schema

__all__ = ["SplitData", "load_items", "load_split", "train_sequences", "train_item_counts"]

SPLITS = ("train", "valid", "test")


@dataclass
class SplitData:
    """One split as arrays: user u_i saw history_i (oldest first) and then target_i.

    users: [n]; targets: [n]; history_items: flat [sum of lengths];
    history_offsets: [n + 1], row i's history is history_items[off[i]:off[i+1]].
    """

    users: np.ndarray
    targets: np.ndarray
    history_items: np.ndarray
    history_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def history(self, i: int) -> np.ndarray:
        return self.history_items[self.history_offsets[i] : self.history_offsets[i + 1]]

    def histories(self, start: int, stop: int) -> list[np.ndarray]:
        return [self.history(i) for i in range(start, min(stop, len(self)))]


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    if not path.is_file():
        raise DataError("not found: run jobs/ingest.py for this dataset first", file=path)
    table = pq.read_table(path)
    try:
        check_schema(table, schema, str(path))
    except ValueError as err:
        raise DataError(str(err), file=path) from None
    return table


def load_items(root: str | Path) -> pa.Table:
    return _read(Path(root) / "catalog" / "items.parquet", ITEMS_SCHEMA)


def load_split(root: str | Path, split: str) -> SplitData:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    table = _read(Path(root) / "splits" / f"{split}.parquet", SPLIT_SCHEMA)
    history = table.column("history").combine_chunks()
    offsets = history.offsets.to_numpy().astype(np.int64)
    return SplitData(
        # Copies: Arrow's buffers are read-only and torch warns on wrapping them.
        users=np.array(table.column("user_id").to_numpy()),
        targets=np.array(table.column("target").to_numpy()),
        history_items=history.values.to_numpy()[offsets[0] : offsets[-1]].astype(np.int64),
        history_offsets=offsets - offsets[0],
    )


def train_sequences(root: str | Path) -> Sequences:
    """Each user's full training sequence: all but the valid and test items.

    Models that train on whole sequences (SASRec, item-KNN) read this rather
    than the capped prefixes in train.parquet.
    """
    table = _read(Path(root) / "catalog" / "interactions.parquet", INTERACTIONS_SCHEMA)
    users = table.column("user_id").to_numpy()
    items = table.column("item_id").to_numpy().astype(np.int64)
    counts = np.bincount(users)
    # Ingest holds out the last two items of every user with >= 3 of them.
    held_out = np.where(counts >= 3, 2, 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep_len = counts - held_out
    position = np.arange(len(users)) - starts[users]
    keep = position < keep_len[users]
    offsets = np.concatenate([[0], np.cumsum(keep_len)])
    return Sequences(items[keep], offsets)


def train_item_counts(root: str | Path, num_items: int) -> np.ndarray:
    """Interactions per item in the training portion (defines head vs tail)."""
    return np.bincount(train_sequences(root).items, minlength=num_items)
