"""Text templates: rendering, title fallback, and bad input named by file, row and field."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from sidrec.data import DataError
from sidrec.embed import TextSource, TextTemplate


def items(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"item_id": pa.array(range(n), pa.int32())}
    return pa.table({**base, **columns})


def test_renders_columns_and_joins_the_category_path():
    table = items(
        title=["OPI Nail Lacquer", "Shampoo"],
        brand=["OPI", ""],
        categories=pa.array([["Makeup", "Nails"], []], pa.list_(pa.string())),
    )
    t = TextTemplate.parse("{title} | {brand} | {categories}")
    assert t.fields == ("title", "brand", "categories")
    assert t.render(table) == ["OPI Nail Lacquer | OPI | Makeup > Nails", "Shampoo |  | "]
    assert t.sources(table).tolist() == [TextSource.TEMPLATE, TextSource.TEMPLATE]


def test_blank_text_falls_back_to_title_and_no_title_embeds_empty():
    table = items(title=["Lipstick", "  ", "Mascara"], text=["Title: Lipstick", " \n", ""])
    t = TextTemplate.parse("{text}")
    assert t.render(table) == ["Title: Lipstick", "", "Mascara"]
    assert t.sources(table).tolist() == [TextSource.TEMPLATE, TextSource.EMPTY, TextSource.TITLE]


def test_fallback_needs_every_template_column_blank():
    # Literal template text alone ("Brand: ") is not item text.
    table = items(title=["Soap", "Gel"], brand=["", "Dove"], description=["", ""])
    t = TextTemplate.parse("Brand: {brand}. {description}")
    assert t.render(table) == ["Soap", "Brand: Dove. "]


def test_numbers_render_and_count_as_text():
    table = items(title=["a"], price=pa.array([9.5]))
    assert TextTemplate.parse("{title} costs {price}").render(table) == ["a costs 9.5"]


@pytest.mark.parametrize(
    "template, message",
    [
        ("no fields here", "reads no column"),
        ("{}", "plain column name"),
        ("{0}", "plain column name"),
        ("{title.upper}", "plain column name"),
        ("{categories[0]}", "plain column name"),
        ("{title", "text template"),
    ],
)
def test_bad_templates_are_rejected(template, message):
    with pytest.raises(ValueError, match=message):
        TextTemplate.parse(template)


def test_missing_column_names_file_and_field():
    table = items(title=["a"])
    with pytest.raises(DataError) as err:
        TextTemplate.parse("{text}").check(table.schema, "cat/items.parquet")
    assert err.value.file == "cat/items.parquet" and err.value.field == "text"
    assert "missing column" in str(err.value)


@pytest.mark.parametrize("bad", [None, math.nan])
def test_null_or_nan_text_names_file_row_and_field(bad):
    kind = pa.string() if bad is None else pa.float64()
    good = "x" if bad is None else 1.0
    table = items(title=["a", "b", "c"], text=pa.array([good, bad, good], kind))
    with pytest.raises(DataError) as err:
        TextTemplate.parse("{text}").check(table, "items.parquet")
    assert (err.value.file, err.value.row, err.value.field) == ("items.parquet", 1, "text")
    assert "items.parquet row 1: field 'text'" in str(err.value)


def test_null_title_is_bad_input_even_when_unused():
    table = items(title=pa.array(["a", None], pa.string()), text=["x", "y"])
    with pytest.raises(DataError, match="field 'title'"):
        TextTemplate.parse("{text}").check(table, "items.parquet")
