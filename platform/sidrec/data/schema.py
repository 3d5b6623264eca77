"""The canonical Arrow schemas of docs/ARCHITECTURE.md's artifact contracts, and their checks."""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ITEMS_SCHEMA",
    "INTERACTIONS_SCHEMA",
    "SPLIT_SCHEMA",
    "check_schema",
]

# Extra attribute columns (brand, genres, ...) follow these, always as strings.
ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.int32()),
        ("source_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("categories", pa.list_(pa.string())),
    ]
)
INTERACTIONS_SCHEMA = pa.schema(
    [("user_id", pa.int32()), ("item_id", pa.int32()), ("timestamp", pa.int64())]
)
SPLIT_SCHEMA = pa.schema(
    [("user_id", pa.int32()), ("history", pa.list_(pa.int32())), ("target", pa.int32())]
)


def check_schema(table: pa.Table, expected: pa.Schema, where: str) -> None:
    """Raise if `table` lacks a column of `expected` or has it with another type."""
    for field in expected:
        if field.name not in table.column_names:
            raise ValueError(f"{where}: missing column '{field.name}' (has {table.column_names})")
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise ValueError(f"{where}: column '{field.name}' is {actual}, expected {field.type}")
