"""sid_labels.parquet: `PrefixLabels` on disk, columnar both ways.

One row per stored prefix, level by level in key order (`_label_table`):

    level int8 | parent int64 | code int64 | category string |
    term0, term1, term2 string (null: fewer terms) | items int32

and in the schema metadata `sidrec.sid_labels` = {"format": 2, "levels": L,
"suffix": bool}. Reading builds no Python object per prefix: strings come back
dictionary-encoded by arrow, keys are recomputed with numpy.

Bundles written before this format carry one row per prefix of every length,
disambiguation ones included (`prefix` list<int32>, `category`, `terms`
list<string>, `items`); `read_prefix_labels` reads them into the same structure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidrec.artifacts import atomic_path
from sidrec.data._errors import DataError
from sidrec.data._label_table import (
    NUM_TERMS,
    LabelLevel,
    PrefixLabels,
    check_key_bits,
    code_width,
    drop_dense_suffix,
)

__all__ = ["read_prefix_labels", "write_prefix_labels"]

_META = b"sidrec.sid_labels"
_FORMAT = 2
_COLUMNS = ("level", "parent", "code", "category", "term0", "term1", "term2", "items")
_OLD_COLUMNS = ("prefix", "category", "terms", "items")


def write_prefix_labels(path: str | Path, labels: PrefixLabels) -> None:
    """One parquet row per stored prefix (temp file + rename)."""
    levels = labels.levels
    terms = np.concatenate([lv.terms for lv in levels]) if levels else np.empty((0, NUM_TERMS))
    columns = {
        "level": pa.array(
            np.concatenate(
                [np.full(len(lv.keys), d, np.int8) for d, lv in enumerate(levels)] or [[]]
            ).astype(np.int8)
        ),
        "parent": pa.array(_cat([lv.parents for lv in levels], np.int64)),
        "code": pa.array(_cat([lv.codes for lv in levels], np.int64)),
        "category": labels.categories.take(
            pa.array(_cat([lv.category for lv in levels], np.int32))
        ),
        **{
            f"term{k}": labels.vocab.take(
                pa.array(terms[:, k], mask=terms[:, k] < 0, type=pa.int32())
            )
            for k in range(NUM_TERMS)
        },
        "items": pa.array(_cat([lv.items for lv in levels], np.int32)),
    }
    meta = {"format": _FORMAT, "levels": len(levels), "suffix": labels.suffix}
    table = pa.table(columns).replace_schema_metadata({_META: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


def read_prefix_labels(path: str | Path) -> PrefixLabels:
    """The labels of a sid_labels.parquet, in this format or the one before it."""
    path = Path(path)
    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(_META)
    if meta is None and all(c in table.column_names for c in _OLD_COLUMNS):
        return _read_old(table, path)
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if meta is None or missing:
        raise DataError(
            f"not a SID labels file: missing columns {missing or list(_OLD_COLUMNS)}"
            + ("" if meta else f" or schema metadata {_META.decode()!r}"),
            file=path,
        )
    meta = json.loads(meta)
    if meta.get("format") != _FORMAT:
        raise DataError(f"SID labels format {meta.get('format')}, expected {_FORMAT}", file=path)
    depth = table.column("level").to_numpy()
    bounds = np.searchsorted(depth, np.arange(int(meta["levels"]) + 1))
    if np.any(np.diff(depth) < 0) or bounds[-1] != len(depth):
        raise DataError("rows are not grouped by level 0 .. levels-1", file=path, field="level")
    parent = table.column("parent").to_numpy()
    code = table.column("code").to_numpy()
    categories, category = _encode(table.column("category"), "")
    vocab, terms = _encode_terms([table.column(f"term{k}") for k in range(NUM_TERMS)])
    items = table.column("items").to_numpy().astype(np.int32)
    levels: list[LabelLevel] = []
    for d in range(int(meta["levels"])):
        rows = slice(bounds[d], bounds[d + 1])
        above = len(levels[-1].keys) if levels else 1
        if np.any((parent[rows] < 0) | (parent[rows] >= above)):
            raise DataError(
                f"level {d}: a parent row outside 0..{above - 1}", file=path, field="parent"
            )
        width = code_width(code[rows])
        check_key_bits(above, width, d)
        keys = (parent[rows].astype(np.uint64) << np.uint64(width)) | code[rows].astype(np.uint64)
        if np.any(keys[1:] <= keys[:-1]):
            raise DataError(f"level {d}: prefixes not in ascending order", file=path)
        levels.append(LabelLevel(keys, width, category[rows], terms[rows], items[rows]))
    return PrefixLabels(levels, categories, vocab, bool(meta.get("suffix", False)))


def _encode(column: pa.ChunkedArray, null_value: str) -> tuple[pa.StringArray, np.ndarray]:
    """The distinct strings of a string column and each row's index into them (int32)."""
    encoded = column.combine_chunks().fill_null(null_value).dictionary_encode()
    return encoded.dictionary, encoded.indices.to_numpy().astype(np.int32)


def _encode_terms(columns: list[pa.ChunkedArray]) -> tuple[pa.StringArray, np.ndarray]:
    """One vocabulary over the term columns, and [G x NUM_TERMS] ids (-1: none)."""
    joined = pa.chunked_array([c for col in columns for c in col.chunks], pa.string())
    encoded = joined.combine_chunks().dictionary_encode()
    ids = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
    return encoded.dictionary, ids.reshape(len(columns), -1).T.copy()


def _read_old(table: pa.Table, path: Path) -> PrefixLabels:
    """A file of the format before this one (module docstring), vectorised."""
    prefix = table.column("prefix").combine_chunks()
    lengths = pc.list_value_length(prefix).fill_null(0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(prefix).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    categories, category = _encode(table.column("category"), "")
    vocab, terms = _old_terms(table.column("terms").combine_chunks())
    items = table.column("items").combine_chunks().fill_null(0).to_numpy().astype(np.int32)
    if np.any(lengths == 0):
        raise DataError(
            f"row {int(np.argmin(lengths))}: an empty prefix", file=path, field="prefix"
        )
    levels: list[LabelLevel] = []
    for d in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths == d + 1)
        prefixes = flat[starts[rows][:, None] + np.arange(d + 1)]  # [G x d+1]
        parent = _parent_rows(levels, prefixes[:, :d], path)
        width = code_width(prefixes[:, d])
        check_key_bits(len(levels[-1].keys) if levels else 1, width, d)
        keys = (parent.astype(np.uint64) << np.uint64(width)) | prefixes[:, d].astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        rows, keys = rows[order], keys[order]
        if np.any(np.diff(keys) == 0):
            raise DataError(f"a prefix of length {d + 1} appears twice", file=path, field="prefix")
        levels.append(LabelLevel(keys, width, category[rows], terms[rows], items[rows]))
    levels, suffix = drop_dense_suffix(levels, categories)
    return PrefixLabels(levels, categories, vocab, suffix)


def _old_terms(terms: pa.ListArray) -> tuple[pa.StringArray, np.ndarray]:
    """A list<string> terms column -> a vocabulary and [G x NUM_TERMS] ids (-1 pads)."""
    lengths = pc.list_value_length(terms).fill_null(0).to_numpy().astype(np.int64)
    encoded = pc.list_flatten(terms).fill_null("").dictionary_encode()
    ids = encoded.indices.to_numpy().astype(np.int32)
    row = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = np.full((len(lengths), NUM_TERMS), -1, np.int32)
    kept = pos < NUM_TERMS
    out[row[kept], pos[kept]] = ids[kept]
    return encoded.dictionary, out


def _parent_rows(levels: list[LabelLevel], prefixes: np.ndarray, path: Path) -> np.ndarray:
    """[G] the row, in the last of levels, of each prefix [G x d] (0 when d = 0)."""
    row = np.zeros(len(prefixes), np.int64)
    for d, level in enumerate(levels):
        code = prefixes[:, d].astype(np.uint64)
        keys = (row.astype(np.uint64) << np.uint64(level.width)) | code
        found = np.minimum(np.searchsorted(level.keys, keys), max(len(level.keys) - 1, 0))
        fits = prefixes[:, d] < 1 << level.width  # else its key would alias another's
        if len(level.keys) == 0 or not np.all(fits & (level.keys[found] == keys)):
            raise DataError(
                f"a prefix of length {prefixes.shape[1] + 1} has no label for "
                f"its first {d + 1} codes",
                file=path,
                field="prefix",
            )
        row = found.astype(np.int64)
    return row
