"""The semantic-ID table artifact (`sids/<run>.parquet`), shared by every tokenizer
that writes one and every recommender or server that reads one.

Columns: `item_id: int32` (0..N-1, sorted), `codes: list<int32>` of fixed
length L (the learned SID, before disambiguation), `disambig: int32` (the
TIGER-style suffix that separates items whose codes coincide: 0 for the first
item of a SID, 1 for the second, ...; all 0 when the table needs none),
`tags: list<string>` (the majority tag text of each code, one per level, "" where
unknown). Codebook sizes and what produced the table live in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec.artifacts import atomic_path, write_json_atomic
from sidrec.data._errors import DataError

__all__ = ["SID_SCHEMA", "SidTable", "disambiguate", "read_sid_table", "write_sid_table"]

SID_SCHEMA = pa.schema(
    [
        ("item_id", pa.int32()),
        ("codes", pa.list_(pa.int32())),
        ("disambig", pa.int32()),
        ("tags", pa.list_(pa.string())),
    ]
)


@dataclass
class SidTable:
    """codes: [N x L] int64; disambig: [N]; codebook_sizes: K per level (len L)."""

    codes: np.ndarray
    disambig: np.ndarray
    codebook_sizes: list[int]
    tags: list[list[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    @property
    def num_levels(self) -> int:
        return self.codes.shape[1]

    def full_codes(self) -> np.ndarray:
        """[N x L'] distinct rows: the codes plus the suffix level when one is needed."""
        if self.disambig.max(initial=0) == 0:
            return self.codes
        return np.concatenate([self.codes, self.disambig[:, None]], axis=1)

    def full_codebook_sizes(self) -> list[int]:
        if self.disambig.max(initial=0) == 0:
            return list(self.codebook_sizes)
        return list(self.codebook_sizes) + [int(self.disambig.max()) + 1]


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """[N x L] -> [N]: 0, 1, 2, ... over the items sharing each code tuple, in item order."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = rank_sorted
    return out


def write_sid_table(path: str | Path, table: SidTable, manifest: dict[str, Any]) -> None:
    """Write the parquet file (temp + rename) and `<stem>.manifest.json` beside it."""
    path = Path(path)
    codes = np.asarray(table.codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N x L], got shape {codes.shape}")
    if len(table.codebook_sizes) != codes.shape[1]:
        raise ValueError(
            f"codebook_sizes has {len(table.codebook_sizes)} levels, codes {codes.shape[1]}"
        )
    n, levels = codes.shape
    tags = table.tags or [[""] * levels for _ in range(n)]
    arrow = pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int32)),
            "codes": pa.array(codes.astype(np.int32).tolist(), pa.list_(pa.int32())),
            "disambig": pa.array(np.asarray(table.disambig, dtype=np.int32)),
            "tags": pa.array(tags, pa.list_(pa.string())),
        },
        schema=SID_SCHEMA,
    )
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    full = {**manifest, "codebook_sizes": list(map(int, table.codebook_sizes)), "num_items": n}
    write_json_atomic(path.with_name(f"{path.stem}.manifest.json"), full)


def read_sid_table(path: str | Path, num_items: int | None = None) -> SidTable:
    """Load and check a SID table; `num_items` = the catalog size it must cover."""
    path = Path(path)
    if not path.is_file():
        raise DataError("SID table not found: train a tokenizer first", file=path)
    arrow = pq.read_table(path)
    missing = [f.name for f in SID_SCHEMA if f.name not in arrow.column_names]
    if missing:
        raise DataError(f"missing columns {missing}", file=path)
    ids = arrow.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise DataError("item_id must be 0..N-1 in order", file=path, field="item_id")
    if num_items is not None and len(ids) != num_items:
        raise DataError(
            f"has {len(ids)} items, the catalog {num_items}", file=path, field="item_id"
        )
    lengths = np.diff(arrow.column("codes").combine_chunks().offsets.to_numpy())
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError("codes have different lengths", file=path, row=row, field="codes")
    codes = np.asarray(arrow.column("codes").to_pylist(), dtype=np.int64).reshape(len(ids), -1)
    manifest = read_manifest_beside(path)
    sizes = manifest.get("codebook_sizes") or (codes.max(axis=0) + 1).tolist()
    return SidTable(
        codes=codes,
        disambig=arrow.column("disambig").to_numpy().astype(np.int64),
        codebook_sizes=[int(k) for k in sizes],
        tags=arrow.column("tags").to_pylist(),
        meta=manifest,
    )


def read_manifest_beside(path: Path) -> dict[str, Any]:
    import json

    side = path.with_name(f"{path.stem}.manifest.json")
    try:
        return json.loads(side.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
