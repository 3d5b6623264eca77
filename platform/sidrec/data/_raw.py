"""What a dataset loader hands to ingest: raw items and interactions, source ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

# Columns every loader's items table has; loaders may add string attribute
# columns (brand, genres, ...), which ingest keeps as they are.
RAW_ITEM_COLUMNS = ("source_id", "title", "text", "categories")
# `row` is the 1-based line (text files) or 0-based row (tables) of the
# interaction in its file, so later checks can still name it.
RAW_INTERACTION_COLUMNS = ("user", "item", "timestamp", "row")


@dataclass(frozen=True)
class RawDataset:
    """A dataset as read from disk, before filtering, id assignment and splits.

    items: one row per item, in the dataset's own order. `source_id: string`
        (unique), `title: string`, `text: string` (default rendering for
        embedding), `categories: list<string>` (primary path coarse -> fine,
        may be empty), plus extra string attribute columns.
    interactions: `user: string`, `item: string` (an items source_id),
        `timestamp: int64`, `row: int64`. Where the source has no timestamps,
        `timestamp` is the position in the user's chronological sequence and
        `has_timestamps` is False.
    """

    name: str
    items: pa.Table
    interactions: pa.Table
    has_timestamps: bool
    interactions_file: Path
    items_file: Path | None
    input_files: list[Path]
    notes: list[str] = field(default_factory=list)
