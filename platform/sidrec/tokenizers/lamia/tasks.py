"""Attribute tasks built from the catalog's item fields (§4.2.2).

Each item has a few text attributes (Beauty: title, brand, category path).
The content block shows some of them; then one training sample per attribute
asks the model to write that attribute from the palette alone:
reconstruction when the attribute was in the content, prediction when it
was left out. Leaving one attribute out at random (`drop_prob`) makes both
kinds appear, so the palette must carry what the text implies, not only
what it spells.

    attrs = item_attributes(items, ("title", "brand", "categories"))   # from load_items(root)
    sample = sample_tasks(attrs, rows, drop_prob=0.3, rng=rng)
    sample.content   # b content texts; sample.task_item / task_id / answers: one row per task
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sidrec.data import DataError

__all__ = [
    "ItemAttributes",
    "TaskSample",
    "auto_fields",
    "item_attributes",
    "render_content",
    "sample_tasks",
]

# How a field is called in the content text; unknown fields use their column name.
_LABELS = {"title": "Title", "brand": "Brand", "categories": "Category"}
# Values that mean "no value" in the ingested catalogs.
_EMPTY = {"", "unknown", "none", "null", "n/a"}


@dataclass
class ItemAttributes:
    """fields: the attribute names, in order; values[f][i] = item i's text ("" = none)."""

    fields: tuple[str, ...]
    values: dict[str, list[str]]

    @property
    def num_items(self) -> int:
        return len(self.values[self.fields[0]])


@dataclass
class TaskSample:
    """One batch of items and their attribute tasks.

    content: [b] content texts; task_item: [m] row (0..b-1) of each task;
    task_id: [m] index into fields; answers: [m] answer texts;
    reconstruct: [m] True when the attribute was shown in the content.
    """

    content: list[str]
    task_item: np.ndarray
    task_id: np.ndarray
    answers: list[str]
    reconstruct: np.ndarray


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " > ".join(str(v) for v in value if v)
    text = str(value).strip()
    return "" if text.lower() in _EMPTY else text


# Canonical columns that are not item attributes (ids, the rendered text).
_NOT_ATTRIBUTES = {"item_id", "source_id", "text"}


def auto_fields(items: pa.Table, min_coverage: float = 0.5) -> tuple[str, ...]:
    """title, categories, then the catalog's extra attribute columns (brand,
    genres, ...): every string / list column but ids and the rendered text,
    kept when at least min_coverage of the items have a value."""
    names = ["title", "categories"] + [
        c
        for c in items.column_names
        if c not in _NOT_ATTRIBUTES and c not in ("title", "categories") and not c.endswith("_id")
    ]
    kept = []
    for name in names:
        values = [_text(v) for v in items.column(name).to_pylist()]
        if values and sum(bool(v) for v in values) >= min_coverage * len(values):
            kept.append(name)
    return tuple(kept)


def item_attributes(items: pa.Table, fields: tuple[str, ...]) -> ItemAttributes:
    """The text of each field for every item (items: catalog/items.parquet);
    fields () = `auto_fields(items)`."""
    fields = tuple(fields) or auto_fields(items)
    if not fields:
        raise ValueError("task_fields: name at least one item field (e.g. title)")
    missing = [f for f in fields if f not in items.column_names]
    if missing:
        raise DataError(
            f"LAMIA task fields {missing} are not columns of the catalog "
            f"(has {items.column_names}); set task_fields",
            file="catalog/items.parquet",
            field=missing[0],
        )
    values = {f: [_text(v) for v in items.column(f).to_pylist()] for f in fields}
    if not any(values[fields[0]]):
        raise DataError(
            f"field {fields[0]!r} is empty for every item", file="catalog/items.parquet"
        )
    return ItemAttributes(tuple(fields), values)


def render_content(attrs: ItemAttributes, row: int, shown: tuple[str, ...] | None = None) -> str:
    """'Title: …\\nBrand: …\\nCategory: …' with the shown fields that have a value."""
    lines = []
    for f in shown if shown is not None else attrs.fields:
        value = attrs.values[f][row]
        if value:
            lines.append(f"{_LABELS.get(f, f)}: {value}")
    return "\n".join(lines)


def sample_tasks(
    attrs: ItemAttributes, rows: np.ndarray, drop_prob: float, rng: np.random.Generator
) -> TaskSample:
    """Content texts and one task per non-empty attribute for the items `rows`.

    With probability drop_prob an item's content leaves out one of its
    non-empty attributes (never the only one), which then becomes a
    prediction task.
    """
    content, task_item, task_id, answers, recon = [], [], [], [], []
    for b, row in enumerate(rows.tolist()):
        present = [f for f in attrs.fields if attrs.values[f][row]]
        dropped = None
        if len(present) > 1 and rng.random() < drop_prob:
            dropped = present[int(rng.integers(len(present)))]
        shown = tuple(f for f in present if f != dropped)
        content.append(render_content(attrs, row, shown))
        for t, f in enumerate(attrs.fields):
            if attrs.values[f][row]:
                task_item.append(b)
                task_id.append(t)
                answers.append(attrs.values[f][row])
                recon.append(f != dropped)
    return TaskSample(
        content=content,
        task_item=np.asarray(task_item, dtype=np.int64),
        task_id=np.asarray(task_id, dtype=np.int64),
        answers=answers,
        reconstruct=np.asarray(recon, dtype=bool),
    )
