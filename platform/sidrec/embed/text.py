"""Item text for the encoder: a format-string template over item columns.

    t = TextTemplate.parse("{title}. Brand: {brand}. {categories}")
    t.check(items_table, file="catalog/items.parquet")   # DataError on bad input
    texts = t.render(batch)                              # list[str], one per row

Rules, the same in the driver's checks and in every Ray worker:
- a column the template reads, or `title`, that is missing is a DataError
  naming the file and the column; a null (or NaN) in one is a DataError naming
  the file, the first such row and the column. Ingest writes "" for unknown
  text, so a null means the file did not come from ingest or is corrupt;
- list columns (the category path) render as "a > b > c";
- an item whose template columns are all blank falls back to its title
  (`TextSource.TITLE`), counted in the manifest;
- an item with a blank title too is still embedded, as the empty string
  (`TextSource.EMPTY`), counted and logged. Dropping it would break the dense
  0..N-1 item ids every later stage indexes by; every such item gets the same
  vector, which the tokenizer's collision metrics then make visible.
"""

from __future__ import annotations

import enum
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sidrec.data import DataError

__all__ = ["LIST_SEPARATOR", "TITLE_COLUMN", "TextSource", "TextTemplate"]

LIST_SEPARATOR = " > "  # the same separator ingest uses for the category path
TITLE_COLUMN = "title"


class TextSource(enum.IntEnum):
    """Where an item's embedded text came from."""

    TEMPLATE = 0
    TITLE = 1  # every template column was blank
    EMPTY = 2  # the title was blank too


@dataclass(frozen=True)
class TextTemplate:
    template: str
    # Item columns the template reads, in order of first use.
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> TextTemplate:
        names: list[str] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as err:
            raise ValueError(f"text template {template!r}: {err}") from None
        for _, name, _, _ in parsed:
            if name is None:
                continue
            # `{}`/`{0}` would need positional values and `{a.b}`/`{a[0]}` would reach
            # into Python objects: a template names columns, nothing else.
            if not name.isidentifier():
                raise ValueError(
                    f"text template {template!r}: field {{{name}}} must be a plain column name"
                )
            if name not in names:
                names.append(name)
        if not names:
            raise ValueError(f"text template {template!r} reads no column, e.g. use '{{title}}'")
        return cls(template, tuple(names))

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns a worker needs: the template's and the title for the fallback."""
        return tuple(dict.fromkeys((*self.fields, TITLE_COLUMN)))

    def check(self, table: pa.Table | pa.Schema, file: str | Path) -> None:
        """Raise DataError if a column is missing or holds a null/NaN (schema only when given one)."""
        schema = table if isinstance(table, pa.Schema) else table.schema
        for name in self.columns:
            if name not in schema.names:
                raise DataError(
                    f"missing column (the text template {self.template!r} reads it; "
                    f"columns are {schema.names})",
                    file=file,
                    field=name,
                )
        if isinstance(table, pa.Schema):
            return
        for name in self.columns:
            missing = _null_mask(table.column(name))
            if missing.any():
                first = int(np.flatnonzero(missing)[0])
                raise DataError(
                    f"null value in {int(missing.sum())} row(s); write '' for unknown text",
                    file=file,
                    row=first,
                    field=name,
                )

    def sources(self, table: pa.Table) -> np.ndarray:
        """`TextSource` per row: [n] int8."""
        blank = np.ones(table.num_rows, dtype=bool)
        for name in self.fields:
            blank &= _blank_mask(table.column(name))
        title_blank = _blank_mask(table.column(TITLE_COLUMN))
        out = np.full(table.num_rows, TextSource.TEMPLATE, dtype=np.int8)
        out[blank] = TextSource.TITLE
        out[blank & title_blank] = TextSource.EMPTY
        return out

    def render(self, table: pa.Table) -> list[str]:
        """The text to embed for each row (the rules of the module docstring)."""
        values = {name: _as_text(table.column(name)) for name in self.fields}
        titles = table.column(TITLE_COLUMN).to_pylist()
        sources = self.sources(table)
        texts = []
        for i, source in enumerate(sources):
            if source == TextSource.TEMPLATE:
                texts.append(self.template.format_map({k: v[i] for k, v in values.items()}))
            else:
                texts.append(titles[i].strip() if source == TextSource.TITLE else "")
        return texts


def _null_mask(column: pa.ChunkedArray) -> np.ndarray:
    nan_aware = pa.types.is_floating(column.type)
    return pc.is_null(column, nan_is_null=nan_aware).to_numpy(zero_copy_only=False)


def _blank_mask(column: pa.ChunkedArray) -> np.ndarray:
    """True where a value carries no text: "", whitespace, an empty list (nulls count as blank)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        blank = pc.equal(pc.list_value_length(column), 0)
    elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    else:  # numbers, booleans: a present value is text
        blank = pc.is_null(column)
    return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)


def _as_text(column: pa.ChunkedArray) -> list[str]:
    values = column.to_pylist()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return [LIST_SEPARATOR.join(v or []) for v in values]
    return ["" if v is None else str(v) for v in values]
