"""A dataset of your own: an items file and an interactions file (Parquet, CSV
or JSON lines) plus a mapping from their columns to sidrec's.

    spec = CustomSpec(items_path="items.parquet", interactions_path="events.csv",
                      item_id="sku", title="name", categories="breadcrumb",
                      category_separator=" > ", attributes=("brand",),
                      user_id="customer", interaction_item_id="sku", timestamp="ts")
    raw = load_custom(spec)

`row` in the interactions table and in errors is the 0-based data row of the
file (the header is not a row), as for every table input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from sidrec.data._errors import DataError
from sidrec.data._raw import RAW_ITEM_COLUMNS, RawDataset
from sidrec.data._text import items_table, render_item_text

READERS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
# Ingest adds its own dense `item_id`; an attribute under that name would clash.
RESERVED = (*RAW_ITEM_COLUMNS, "item_id")


@dataclass(frozen=True)
class CustomSpec:
    """Where the two files are and which column means what."""

    items_path: Path
    interactions_path: Path
    # items file
    item_id: str = "item_id"
    title: str = "title"
    text: str | None = None  # None: render title + categories + attributes
    categories: str | None = None  # a list<string> column, or a string split below
    category_separator: str = " > "
    attributes: tuple[str, ...] = ()  # extra columns kept, as strings
    # interactions file
    user_id: str = "user_id"
    interaction_item_id: str = "item_id"
    timestamp: str | None = None  # None: the file order within a user is the order
    # True: rows are already chronological per user, so a timestamp that goes
    # back within a user is a broken file rather than something to sort away.
    ordered: bool = False
    name: str = "custom"

    def __post_init__(self):
        if isinstance(self.attributes, str):
            raise DataError(
                f"attributes must be a list of column names, got {self.attributes!r}",
                field="attributes",
            )
        object.__setattr__(self, "items_path", Path(self.items_path))
        object.__setattr__(self, "interactions_path", Path(self.interactions_path))
        object.__setattr__(self, "attributes", tuple(self.attributes))

    @classmethod
    def from_mapping(cls, mapping: Mapping, base_dir: Path | None = None) -> CustomSpec:
        """Build from a parsed YAML/JSON config; relative paths are taken from base_dir."""
        if not isinstance(mapping, Mapping):
            raise DataError(
                f"custom dataset config must be a mapping, got {type(mapping).__name__}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise DataError(
                f"unknown key(s) {unknown} in custom dataset config; known keys: {known}"
            )
        for required in ("items_path", "interactions_path"):
            if required not in mapping:
                raise DataError(f"custom dataset config needs {required!r}", field=required)
        values = dict(mapping)
        for key in ("items_path", "interactions_path"):
            path = Path(values[key]).expanduser()
            values[key] = (
                Path(base_dir) / path if base_dir is not None and not path.is_absolute() else path
            )
        _check_types(values)
        return cls(**values)


def _check_types(values: dict) -> None:
    for key, value in values.items():
        if key == "ordered" and not isinstance(value, bool):
            raise DataError(f"expected true or false, got {value!r}", field=key)
        if key == "attributes" and not (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        ):
            raise DataError(f"expected a list of column names, got {value!r}", field=key)
        if (
            key in ("text", "categories", "timestamp")
            and value is not None
            and not isinstance(value, str)
        ):
            raise DataError(f"expected a column name or null, got {value!r}", field=key)
        if key in (
            "item_id",
            "title",
            "category_separator",
            "user_id",
            "interaction_item_id",
            "name",
        ) and not isinstance(value, str):
            raise DataError(f"expected a string, got {value!r}", field=key)


def load_custom(spec: CustomSpec) -> RawDataset:
    items = _items(spec)
    interactions = _interactions(spec, items.column("source_id"))
    notes = []
    if spec.timestamp is None:
        notes.append(
            "no timestamp column: `timestamp` is the position among the user's rows in file order"
        )
    return RawDataset(
        name=spec.name,
        items=items,
        interactions=interactions,
        has_timestamps=spec.timestamp is not None,
        interactions_file=spec.interactions_path,
        items_file=spec.items_path,
        input_files=[spec.interactions_path, spec.items_path],
        notes=notes,
    )


def _items(spec: CustomSpec) -> pa.Table:
    path = spec.items_path
    bad = [a for a in spec.attributes if a in RESERVED]
    if bad:
        raise DataError(
            f"attribute columns may not be named {bad}: sidrec uses those names", field="attributes"
        )
    table = read_table(path, id_columns=[spec.item_id])
    wanted = [spec.item_id, spec.title, spec.text, spec.categories, *spec.attributes]
    require_columns(table, [c for c in wanted if c is not None], path)
    source_id = id_column(table, spec.item_id, path)
    _check_unique(source_id, path, spec.item_id)
    title = _strings(table.column(spec.title))
    categories = _categories(table, spec, path)
    attributes = {a: _strings(table.column(a)) for a in spec.attributes}
    if spec.text is not None:
        text = _strings(table.column(spec.text))
    else:
        text = [
            render_item_text(
                t, categories=c, extra={_label(a): v[i] for a, v in attributes.items()}
            )
            for i, (t, c) in enumerate(zip(title, categories, strict=True))
        ]
    return items_table(source_id.to_pylist(), title, text, categories, attributes, path)


def _label(column: str) -> str:
    # `brand_name` -> `Brand name` in the rendered text
    words = column.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _interactions(spec: CustomSpec, catalog: pa.ChunkedArray) -> pa.Table:
    path = spec.interactions_path
    columns = [spec.user_id, spec.interaction_item_id, spec.timestamp]
    table = read_table(path, id_columns=[spec.user_id, spec.interaction_item_id])
    require_columns(table, [c for c in columns if c is not None], path)
    user = id_column(table, spec.user_id, path)
    item = id_column(table, spec.interaction_item_id, path)
    known = pc.is_in(item, value_set=catalog.combine_chunks())
    if not pc.all(known).as_py():
        row = _first_true(pc.invert(known))
        raise DataError(
            f"item {item[row].as_py()!r} is not in {spec.items_path}",
            file=path,
            row=row,
            field=spec.interaction_item_id,
        )
    codes = pc.dictionary_encode(user.combine_chunks()).indices.to_numpy(zero_copy_only=False)
    if spec.timestamp is not None:
        timestamp = _timestamps(table, spec.timestamp, path)
        if spec.ordered:
            _check_ordered(codes, timestamp, path, spec.timestamp)
    else:
        timestamp = _positions(codes)
    return pa.table(
        {
            "user": user,
            "item": item,
            "timestamp": pa.array(timestamp, pa.int64()),
            "row": pa.array(np.arange(len(table), dtype=np.int64)),
        }
    )


def read_table(path: Path, id_columns: list[str]) -> pa.Table:
    """Read Parquet, CSV/TSV or JSON lines, by extension; id columns stay text in CSV
    (so `007` is not read as 7)."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"unknown file type {path.suffix!r}; use one of {sorted(READERS)}", file=path
        )
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        if kind == "parquet":
            table = pq.read_table(path)
        elif kind == "json":
            table = pa_json.read_json(path)
        else:
            table = pa_csv.read_csv(
                path,
                parse_options=pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ","),
                # Blank cells become null, so a missing id is caught as one.
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(id_columns, pa.string()), strings_can_be_null=True
                ),
            )
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"cannot read {kind} file: {e}", file=path) from None
    if len(table) == 0:
        raise DataError("the file has no rows", file=path)
    return table


def require_columns(table: pa.Table, columns: list[str], path: Path) -> None:
    for column in columns:
        if column not in table.column_names:
            raise DataError(
                f"column {column!r} not found; columns present: {', '.join(table.column_names)}",
                file=path,
                field=column,
            )


def id_column(table: pa.Table, column: str, path: Path) -> pa.ChunkedArray:
    """An id column as strings; ids must be strings or integers and never null."""
    values = table.column(column)
    kind = values.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    ):
        # A float id (1.0) usually means a CSV column with blanks; say so rather than guess.
        raise DataError(
            f"ids must be strings or integers, got {values.type}", file=path, field=column
        )
    if values.null_count:
        raise DataError("id is null", file=path, row=_first_true(values.is_null()), field=column)
    ids = pc.cast(values, pa.string())
    empty = pc.equal(pc.utf8_trim_whitespace(ids), "")
    if pc.any(empty).as_py():
        raise DataError("id is empty", file=path, row=_first_true(empty), field=column)
    return ids


def _check_unique(ids: pa.ChunkedArray, path: Path, column: str) -> None:
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    first_row: dict[str, int] = {}
    for row, value in enumerate(ids.to_pylist()):
        if value in first_row:
            raise DataError(
                f"item id {value!r} appears twice (first on row {first_row[value]})",
                file=path,
                row=row,
                field=column,
            )
        first_row[value] = row


def _strings(values: pa.ChunkedArray) -> list[str]:
    return pc.fill_null(pc.cast(values, pa.string()), "").to_pylist()


def _categories(table: pa.Table, spec: CustomSpec, path: Path) -> list[list[str]]:
    if spec.categories is None:
        return [[] for _ in range(len(table))]
    values = table.column(spec.categories)
    kind = values.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [
            [str(c).strip() for c in v if c is not None and str(c).strip()] if v else []
            for v in values.to_pylist()
        ]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        sep = spec.category_separator
        return [
            [c.strip() for c in v.split(sep) if c.strip()] if v else [] for v in values.to_pylist()
        ]
    raise DataError(
        f"categories must be a list of strings or a string split by "
        f"{spec.category_separator!r}, got {kind}",
        file=path,
        field=spec.categories,
    )


def _timestamps(table: pa.Table, column: str, path: Path) -> np.ndarray:
    values = table.column(column)
    if values.null_count:
        raise DataError(
            "timestamp is null", file=path, row=_first_true(values.is_null()), field=column
        )
    try:
        # Integers pass; datetime columns become their integer count of their unit.
        return pc.cast(values, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"timestamps must be integers or datetimes, got {values.type}", file=path, field=column
        ) from None


def _check_ordered(codes: np.ndarray, timestamp: np.ndarray, path: Path, column: str) -> None:
    """With `ordered`, the first row (in file order) whose timestamp is earlier
    than the user's previous row is an error."""
    order = np.argsort(codes, kind="stable")  # users grouped, file order within each
    same_user = codes[order][1:] == codes[order][:-1]
    back = same_user & (timestamp[order][1:] < timestamp[order][:-1])
    if back.any():
        row = int(order[1:][back].min())
        previous = int(order[:-1][back][order[1:][back].argmin()])
        raise DataError(
            f"timestamp {timestamp[row]} is earlier than the same user's row {previous} "
            f"({timestamp[previous]}), but the spec says rows are ordered",
            file=path,
            row=row,
            field=column,
        )


def _positions(codes: np.ndarray) -> np.ndarray:
    """0-based position of each row among its user's rows, in file order."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    positions = np.empty(len(codes), dtype=np.int64)
    positions[order] = np.arange(len(codes)) - run_start
    return positions


def _first_true(mask) -> int:
    return int(np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))[0])
