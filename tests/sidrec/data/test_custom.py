"""Custom datasets: Parquet, CSV and JSON lines through a column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.data._custom import _check_ordered, _positions
from sidrec.data.datasets import CustomSpec, DataError, load_custom


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def parquet_spec(tmp_path) -> CustomSpec:
    items = pa.table(
        {
            "sku": ["007", "B2", "C3"],
            "name": ["Serum", None, "Comb"],
            "path": [["Skin Care", "Face"], None, ["Tools"]],
            "brand": ["Acme", "Zed", None],
            "price": [9.5, 3.0, 1.25],
        }
    )
    events = pa.table(
        {
            "customer": ["u1", "u1", "u2", "u1"],
            "sku": ["007", "B2", "C3", "C3"],
            "ts": pa.array([10, 20, 5, 30], pa.int64()),
        }
    )
    pq.write_table(items, tmp_path / "items.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    return CustomSpec(
        items_path=tmp_path / "items.parquet",
        interactions_path=tmp_path / "events.parquet",
        item_id="sku",
        title="name",
        categories="path",
        attributes=("brand", "price"),
        user_id="customer",
        interaction_item_id="sku",
        timestamp="ts",
        ordered=True,
        name="shop",
    )


def test_parquet_with_list_categories(parquet_spec):
    raw = load_custom(parquet_spec)
    assert raw.name == "shop" and raw.has_timestamps
    items = raw.items.to_pylist()
    assert items[0] == {
        "source_id": "007",
        "title": "Serum",
        "text": "Title: Serum\nCategory: Skin Care > Face\nBrand: Acme\nPrice: 9.5",
        "categories": ["Skin Care", "Face"],
        "brand": "Acme",
        "price": "9.5",
    }
    assert items[1]["title"] == "" and items[1]["categories"] == []
    assert raw.items.schema.field("categories").type == pa.list_(pa.string())
    assert raw.interactions.to_pylist()[2] == {"user": "u2", "item": "C3", "timestamp": 5, "row": 2}


def test_csv_string_categories_keep_leading_zeros(tmp_path):
    items = write_csv(
        tmp_path / "items.csv", "id,title,cat,blurb\n007,Serum,Skin Care > Face,Nice\n8,Comb,,\n"
    )
    events = write_csv(tmp_path / "events.csv", "user,item\n01,007\n01,8\n02,8\n")
    spec = CustomSpec(
        items_path=items,
        interactions_path=events,
        item_id="id",
        categories="cat",
        text="blurb",
        user_id="user",
        interaction_item_id="item",
    )
    raw = load_custom(spec)
    assert raw.items.column("source_id").to_pylist() == ["007", "8"]
    assert raw.items.column("categories").to_pylist() == [["Skin Care", "Face"], []]
    assert raw.items.column("text").to_pylist() == ["Nice", ""]
    assert raw.interactions.column("user").to_pylist() == ["01", "01", "02"]
    # no timestamp column: position within the user, in file order
    assert raw.interactions.column("timestamp").to_pylist() == [0, 1, 0]
    assert raw.has_timestamps is False


def test_jsonl_with_separator_and_integer_ids(tmp_path):
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [{"item_id": 1, "title": "A", "cat": "x/y"}, {"item_id": 2, "title": "B", "cat": "x"}],
    )
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [{"user_id": 5, "item_id": 2}, {"user_id": 6, "item_id": 1}, {"user_id": 5, "item_id": 1}],
    )
    spec = CustomSpec(
        items_path=items, interactions_path=events, categories="cat", category_separator="/"
    )
    raw = load_custom(spec)
    assert raw.items.column("source_id").to_pylist() == ["1", "2"]
    assert raw.items.column("categories").to_pylist() == [["x", "y"], ["x"]]
    assert raw.interactions.column("timestamp").to_pylist() == [0, 0, 1]


def test_decreasing_timestamp_in_ordered_file(parquet_spec, tmp_path):
    events = write_csv(
        tmp_path / "events.csv", "customer,sku,ts\nu1,007,10\nu2,B2,3\nu1,B2,30\nu1,C3,20\n"
    )
    spec = CustomSpec(**{**parquet_spec.__dict__, "interactions_path": events})
    with pytest.raises(DataError, match="earlier than the same user's row 2") as err:
        load_custom(spec)
    assert (err.value.file, err.value.row, err.value.field) == (str(events), 3, "ts")
    unordered = CustomSpec(
        **{**parquet_spec.__dict__, "interactions_path": events, "ordered": False}
    )
    assert load_custom(unordered).interactions.column("timestamp").to_pylist() == [10, 3, 30, 20]


def test_datetime_timestamps_become_integers(parquet_spec, tmp_path):
    events = write_csv(tmp_path / "events.csv", "customer,sku,ts\nu1,007,2024-01-01T00:00:00\n")
    spec = CustomSpec(**{**parquet_spec.__dict__, "interactions_path": events})
    assert load_custom(spec).interactions.column("timestamp").to_pylist() == [1704067200]


@pytest.mark.parametrize(
    ("events_csv", "row", "field", "message"),
    [
        ("customer,sku,ts\nu1,007,1\n,B2,2\n", 1, "customer", "id is null"),
        ("customer,sku,ts\nu1,007,1\nu1,ZZ,2\n", 1, "sku", "item 'ZZ' is not in"),
        ("customer,sku,ts\nu1,007,1\nu1,B2,\n", 1, "ts", "timestamp is null"),
        ("customer,sku,ts\nu1,007,soon\n", None, "ts", "timestamps must be integers or datetimes"),
    ],
)
def test_bad_interaction_rows(parquet_spec, tmp_path, events_csv, row, field, message):
    events = write_csv(tmp_path / "events.csv", events_csv)
    spec = CustomSpec(**{**parquet_spec.__dict__, "interactions_path": events})
    with pytest.raises(DataError, match=message) as err:
        load_custom(spec)
    assert (err.value.file, err.value.row, err.value.field) == (str(events), row, field)


def test_missing_column_lists_columns_present(parquet_spec):
    spec = CustomSpec(**{**parquet_spec.__dict__, "title": "headline"})
    with pytest.raises(
        DataError, match="column 'headline' not found; columns present: sku, name, path"
    ) as err:
        load_custom(spec)
    assert err.value.field == "headline"


def test_duplicate_and_null_item_ids(tmp_path):
    events = write_csv(tmp_path / "events.csv", "user_id,item_id\nu,a\n")
    dup = write_csv(tmp_path / "dup.csv", "item_id,title\na,A\nb,B\na,C\n")
    with pytest.raises(DataError, match=r"item id 'a' appears twice \(first on row 0\)") as err:
        load_custom(CustomSpec(items_path=dup, interactions_path=events))
    assert (err.value.row, err.value.field) == (2, "item_id")
    null = write_jsonl(
        tmp_path / "null.jsonl", [{"item_id": "a", "title": "A"}, {"item_id": None, "title": "B"}]
    )
    with pytest.raises(DataError, match="id is null") as err:
        load_custom(CustomSpec(items_path=null, interactions_path=events))
    assert err.value.row == 1


def test_float_ids_are_refused(tmp_path):
    items = write_jsonl(tmp_path / "items.jsonl", [{"item_id": 1.5, "title": "A"}])
    events = write_csv(tmp_path / "events.csv", "user_id,item_id\nu,1\n")
    with pytest.raises(DataError, match="ids must be strings or integers, got double"):
        load_custom(CustomSpec(items_path=items, interactions_path=events))


def test_unknown_extension_and_empty_file(tmp_path):
    events = write_csv(tmp_path / "events.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        load_custom(CustomSpec(items_path=tmp_path / "items.xlsx", interactions_path=events))
    empty = write_csv(tmp_path / "items.csv", "item_id,title\n")
    with pytest.raises(DataError, match="no rows") as err:
        load_custom(CustomSpec(items_path=empty, interactions_path=events))
    assert err.value.file == str(empty)


def test_reserved_attribute_name(parquet_spec):
    spec = CustomSpec(**{**parquet_spec.__dict__, "attributes": ("text",)})
    with pytest.raises(DataError, match="may not be named"):
        load_custom(spec)


def test_from_mapping(tmp_path, parquet_spec):
    config = {
        "items_path": "items.parquet",
        "interactions_path": "events.parquet",
        "item_id": "sku",
        "title": "name",
        "categories": "path",
        "attributes": ["brand"],
        "user_id": "customer",
        "interaction_item_id": "sku",
        "timestamp": "ts",
        "ordered": True,
    }
    spec = CustomSpec.from_mapping(config, base_dir=tmp_path)
    assert spec.items_path == tmp_path / "items.parquet" and spec.attributes == ("brand",)
    assert load_custom(spec).interactions.num_rows == 4
    with pytest.raises(DataError, match=r"unknown key\(s\) \['item_col'\].*known keys"):
        CustomSpec.from_mapping({**config, "item_col": "sku"})
    with pytest.raises(DataError, match="needs 'interactions_path'"):
        CustomSpec.from_mapping({"items_path": "x.csv"})
    with pytest.raises(DataError, match="expected true or false"):
        CustomSpec.from_mapping({**config, "ordered": "yes"})


def test_blank_id_in_jsonl(tmp_path):
    items = write_jsonl(
        tmp_path / "items.jsonl", [{"item_id": "a", "title": "A"}, {"item_id": " ", "title": "B"}]
    )
    events = write_csv(tmp_path / "events.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(DataError, match="id is empty") as err:
        load_custom(CustomSpec(items_path=items, interactions_path=events))
    assert (err.value.row, err.value.field) == (1, "item_id")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 9)), min_size=1, max_size=40))
def test_vectorized_positions_and_order_check_match_a_loop(rows):
    codes = np.array([u for u, _ in rows])
    timestamps = np.array([t for _, t in rows])
    count: dict[int, int] = {}
    expected = []
    last: dict[int, int] = {}
    first_back = None
    for i, (u, t) in enumerate(rows):
        expected.append(count.get(u, 0))
        count[u] = expected[-1] + 1
        if first_back is None and u in last and t < last[u]:
            first_back = i
        last[u] = t
    assert _positions(codes).tolist() == expected
    if first_back is None:
        _check_ordered(codes, timestamps, Path("x.csv"), "ts")
    else:
        with pytest.raises(DataError) as err:
            _check_ordered(codes, timestamps, Path("x.csv"), "ts")
        assert err.value.row == first_back
