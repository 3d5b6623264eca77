"""Read an item-embedding artifact (`embeddings/<encoder>.parquet`) as one matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sidrec.data._errors import DataError

__all__ = ["load_embeddings"]


def load_embeddings(path: str | Path, num_items: int | None = None) -> np.ndarray:
    """-> float32 [N x d], row i = item i. Checks ids, dimensions and finiteness."""
    path = Path(path)
    if not path.is_file():
        raise DataError("embeddings not found: run jobs/embed_catalog.py first", file=path)
    table = pq.read_table(path)
    for column in ("item_id", "embedding"):
        if column not in table.column_names:
            raise DataError(f"missing column '{column}' (has {table.column_names})", file=path)
    ids = table.column("item_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(len(ids))):
        raise DataError("item_id must cover 0..N-1 exactly once", file=path, field="item_id")
    if num_items is not None and len(ids) != num_items:
        raise DataError(
            f"has {len(ids)} items, the catalog {num_items}", file=path, field="item_id"
        )
    column = table.column("embedding").combine_chunks()
    lengths = np.diff(column.offsets.to_numpy()) if hasattr(column, "offsets") else None
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError(
            f"embedding dimensions disagree ({lengths[row]} vs {lengths[0]})",
            file=path,
            row=row,
            field="embedding",
        )
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    # Rows in item-id order, whatever order the file holds them in.
    matrix = flat.reshape(len(ids), -1)[order]
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(
            "embedding has NaN or inf",
            file=path,
            row=int(np.flatnonzero(bad)[0]),
            field="embedding",
        )
    return matrix
