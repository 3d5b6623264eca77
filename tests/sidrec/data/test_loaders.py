"""The four public dataset loaders: real files (counts and spot values from each
folder's README.md) and bad inputs written to tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from sidrec.data._raw import RAW_INTERACTION_COLUMNS, RAW_ITEM_COLUMNS
from sidrec.data.datasets import DATASETS, DataError, load_dataset, render_item_text

# (users, items, interactions) as verified in the data READMEs
COUNTS = {
    "beauty": (22_363, 12_101, 198_502),
    "sports": (35_598, 18_357, 296_337),
    "yelp": (30_431, 20_033, 316_354),
    "movielens_100k": (943, 1_682, 100_000),
}


@pytest.fixture(scope="module")
def raw(data_dir):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_dataset(name, data_dir)
        return cache[name]

    return get


def items_by_id(table: pa.Table) -> dict[str, dict]:
    return {row["source_id"]: row for row in table.to_pylist()}


# --- real datasets ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_and_schema(raw, name):
    data = raw(name)
    users, items, interactions = COUNTS[name]
    assert data.items.num_rows == items
    assert data.interactions.num_rows == interactions
    assert len(set(data.interactions.column("user").to_pylist())) == users
    assert tuple(data.items.column_names[:4]) == RAW_ITEM_COLUMNS
    assert data.items.schema.field("categories").type == pa.list_(pa.string())
    assert all(
        data.items.schema.field(c).type == pa.string()
        for c in data.items.column_names
        if c != "categories"
    )
    assert tuple(data.interactions.column_names) == RAW_INTERACTION_COLUMNS
    assert [f.type for f in data.interactions.schema] == [
        pa.string(),
        pa.string(),
        pa.int64(),
        pa.int64(),
    ]
    catalog = set(data.items.column("source_id").to_pylist())
    assert len(catalog) == items
    assert set(data.interactions.column("item").to_pylist()) <= catalog
    assert data.notes and data.name == name


def test_beauty_item_one(raw):
    data = raw("beauty")
    first = data.items.slice(0, 1).to_pylist()[0]
    assert first["source_id"] == "B004756YJA"
    assert first["dataset_item_id"] == "1"
    assert first["categories"] == ["Makeup", "Nails", "Nail Polish"]  # root "Beauty" dropped
    assert first["brand"] == "OPI"
    assert first["text"] == (
        "Title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce\n"
        "Brand: OPI\nCategory: Makeup > Nails > Nail Polish"
    )
    assert data.items.column("dataset_item_id").to_pylist()[:3] == ["1", "2", "3"]


def test_beauty_text_is_unescaped_and_extra_paths_kept(raw):
    items = raw("beauty").items.to_pylist()
    assert not any("&amp;" in r["title"] or "&#39;" in r["brand"] for r in items)
    assert any(r["brand"] == "L'Oreal Paris" for r in items)
    others = [json.loads(r["other_categories"]) for r in items if r["other_categories"]]
    assert len(others) == 12  # README: 12 items have 2 category paths
    assert all(p[0] == "Clothing, Shoes & Jewelry" for paths in others for p in paths)
    assert not any(r["categories"] and r["categories"][0] == "Beauty" for r in items)


def test_beauty_sequence_positions(raw):
    data = raw("beauty")
    assert data.has_timestamps is False
    user1 = [r for r in data.interactions.slice(0, 10).to_pylist() if r["user"] == "1"]
    assert [r["timestamp"] for r in user1] == [0, 1, 2, 3, 4]
    assert {r["row"] for r in user1} == {1}
    assert user1[1]["item"] == "B004ZT0SSG"  # Beauty.txt item 2


def test_sports_has_no_text(raw):
    data = raw("sports")
    assert set(data.items.column("title").to_pylist()) == {""}
    assert set(data.items.column("text").to_pylist()) == {""}
    first = data.items.slice(0, 1).to_pylist()[0]
    assert first["source_id"] == "1881509818"
    assert first["attribute_ids"] == "1 2 3 4 5 6"
    assert any("no item text" in n for n in data.notes)


def test_yelp_categories_tags_and_repeats(raw):
    data = raw("yelp")
    items = items_by_id(data.items)
    greek = items["5eV8oUGdBXylwB7HeaDFOA"]
    assert greek["title"] == "The Great Greek"
    assert greek["categories"] == ["Restaurants", "Mediterranean", "Greek"]
    assert json.loads(greek["tags"]) == ["Diners", "Greek", "Mediterranean", "Restaurants"]
    # closed_categories.json leaks numbers such as '17059' into 42 paths
    assert not any(c.isdigit() for r in items.values() for c in r["categories"])
    user1 = [r["item"] for r in data.interactions.to_pylist()[:80] if r["user"] == "1"]
    assert len(user1) > len(set(user1))  # repeat visits are kept
    assert any("closed_categories" in n for n in data.notes)


def test_movielens_items_and_timestamps(raw):
    data = raw("movielens_100k")
    assert data.has_timestamps is True
    items = items_by_id(data.items)
    assert items["1"]["title"] == "Toy Story (1995)"
    assert items["1"]["genres"] == "Animation | Children's | Comedy"
    assert items["1"]["release_date"] == "01-Jan-1995"
    titles = set(data.items.column("title").to_pylist())
    assert "Misérables, Les (1995)" in titles  # latin-1 in u.item
    first = data.interactions.slice(0, 1).to_pylist()[0]
    assert first == {"user": "196", "item": "242", "timestamp": 881250949, "row": 1}
    ts = data.interactions.column("timestamp").to_pylist()
    assert min(ts) == 874724710 and max(ts) == 893286638


def test_registry():
    assert {n: (s.folder, s.kcore) for n, s in DATASETS.items()} == {
        "beauty": ("amazon_beauty", 5),
        "sports": ("amazon_sports", 5),
        "yelp": ("yelp", 5),
        "movielens_100k": ("movielens_100k", 0),
    }


# --- errors from load_dataset -----------------------------------------------------


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(DataError, match="known datasets: beauty, sports, yelp, movielens_100k"):
        load_dataset("beuaty", tmp_path)


def test_missing_folder_names_path_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("beauty", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "amazon_beauty") in message
    assert f"python -m sidrec.data.download beauty --data-dir {tmp_path}" in message


def test_missing_file_names_exact_path(tmp_path):
    (tmp_path / "movielens_100k").mkdir()
    (tmp_path / "movielens_100k" / "u.data").write_text("1\t1\t5\t100\n")
    with pytest.raises(DataError) as err:
        load_dataset("movielens_100k", tmp_path)
    assert err.value.file == str(tmp_path / "movielens_100k" / "u.item")
    assert "copy the files there" in str(err.value)


# --- bad input files ----------------------------------------------------------------

BEAUTY_ITEMS = [
    {
        "item_id": 1,
        "asin": "A1",
        "title": "Red &amp; Blue",
        "categories": [["Beauty", "Makeup", "Nails"]],
        "brand": "OPI",
    },
    {
        "item_id": 2,
        "asin": "A2",
        "title": "Comb",
        "categories": [["Beauty", "Tools"], ["Other", "Bags"]],
        "brand": None,
    },
]


def write_beauty(folder: Path, sequences: str, items: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = BEAUTY_ITEMS if items is None else items
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "Beauty.txt").write_text(sequences)
    return folder


def test_tiny_beauty_loads(tmp_path):
    data = DATASETS["beauty"].load(write_beauty(tmp_path / "b", "1 1 2\n2 2\n"))
    items = data.items.to_pylist()
    assert items[0]["title"] == "Red & Blue"
    assert items[0]["categories"] == ["Makeup", "Nails"]
    assert items[1]["brand"] == "" and items[1]["categories"] == ["Tools"]
    assert json.loads(items[1]["other_categories"]) == [["Other", "Bags"]]
    assert data.interactions.to_pylist() == [
        {"user": "1", "item": "A1", "timestamp": 0, "row": 1},
        {"user": "1", "item": "A2", "timestamp": 1, "row": 1},
        {"user": "2", "item": "A2", "timestamp": 0, "row": 2},
    ]


def test_mixed_roots_are_kept(tmp_path):
    items = [dict(BEAUTY_ITEMS[0]), dict(BEAUTY_ITEMS[1], categories=[["Health", "Tools"]])]
    data = DATASETS["beauty"].load(write_beauty(tmp_path / "b", "1 1 2\n", items))
    assert data.items.column("categories").to_pylist() == [
        ["Beauty", "Makeup", "Nails"],
        ["Health", "Tools"],
    ]


@pytest.mark.parametrize(
    ("sequences", "line", "field", "message"),
    [
        ("1 1 2\n2 x3\n", 2, "item_id", "'x3' is not an integer"),
        ("1 1 2\nu2 1\n", 2, "user_id", "'u2' is not an integer"),
        ("1 1 2\n2\n", 2, "item_id", "at least one item"),
        ("1 1\n\n", 2, "user_id", "at least one item"),
        ("1 1 2\n2 1 9\n", 2, "item_id", "item 9 is not in the item catalog"),
        ("1 1\n2 2\n1 2\n", 3, "user_id", "already has a sequence on line 1"),
    ],
)
def test_bad_sequence_lines(tmp_path, sequences, line, field, message):
    folder = write_beauty(tmp_path / "b", sequences)
    with pytest.raises(DataError, match=message) as err:
        DATASETS["beauty"].load(folder)
    assert (err.value.file, err.value.line, err.value.field) == (
        str(folder / "Beauty.txt"),
        line,
        field,
    )


def test_empty_interactions_file(tmp_path):
    folder = write_beauty(tmp_path / "b", "")
    with pytest.raises(DataError, match="empty") as err:
        DATASETS["beauty"].load(folder)
    assert err.value.file == str(folder / "Beauty.txt")


def test_empty_catalog(tmp_path):
    folder = write_beauty(tmp_path / "b", "1 1\n", items=[])
    with pytest.raises(DataError, match="catalog is empty") as err:
        DATASETS["beauty"].load(folder)
    assert err.value.file == str(folder / "items.jsonl")


@pytest.mark.parametrize(
    ("bad_item", "field", "message"),
    [
        ({"item_id": 2, "title": "x", "categories": [], "brand": None}, "asin", "missing key"),
        (
            {"item_id": "2", "asin": "A2", "title": "x", "categories": [], "brand": None},
            "item_id",
            "expected int",
        ),
        (
            {"item_id": 2, "asin": "A2", "title": "x", "categories": ["flat"], "brand": None},
            "categories",
            "category paths",
        ),
    ],
)
def test_bad_catalog_lines(tmp_path, bad_item, field, message):
    folder = write_beauty(tmp_path / "b", "1 1\n", items=[BEAUTY_ITEMS[0], bad_item])
    with pytest.raises(DataError, match=message) as err:
        DATASETS["beauty"].load(folder)
    assert (err.value.file, err.value.line, err.value.field) == (
        str(folder / "items.jsonl"),
        2,
        field,
    )


def test_invalid_json_line(tmp_path):
    folder = write_beauty(tmp_path / "b", "1 1\n")
    with open(folder / "items.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match="invalid JSON") as err:
        DATASETS["beauty"].load(folder)
    assert err.value.line == 3


def write_yelp(folder: Path, sequences: str) -> Path:
    folder.mkdir(parents=True)
    items = [
        {"item_id": 1, "business_id": "b1", "name": "Cafe", "categories": ["Food", "Coffee"]},
        {"item_id": 2, "business_id": "b2", "name": "Bank", "categories": "unkown"},
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "closed_categories.json").write_text(json.dumps({"1": ["17059", "Food", "Coffee"]}))
    (folder / "sequential_data.txt").write_text(sequences)
    return folder


def test_tiny_yelp(tmp_path):
    data = DATASETS["yelp"].load(write_yelp(tmp_path / "y", "1 1 2 1\n"))
    items = data.items.to_pylist()
    assert items[0]["categories"] == ["Food", "Coffee"]  # numeric junk dropped
    assert items[1]["categories"] == [] and items[1]["tags"] == "[]"
    assert data.interactions.column("item").to_pylist() == ["b1", "b2", "b1"]


def write_movielens(folder: Path, data: str, item_line: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "u.genre").write_text("unknown|0\nComedy|1\n\n")
    item = item_line or "1|Amélie (2001)|01-Jan-2001||http://x|0|1"
    (folder / "u.item").write_bytes((item + "\n2|Heat (1995)|||http://y|0|0\n").encode("latin-1"))
    (folder / "u.data").write_text(data)
    return folder


def test_tiny_movielens(tmp_path):
    data = DATASETS["movielens_100k"].load(
        write_movielens(tmp_path / "m", "7\t1\t5\t100\n7\t2\t3\t50\n")
    )
    items = data.items.to_pylist()
    assert items[0]["title"] == "Amélie (2001)" and items[0]["genres"] == "Comedy"
    assert items[1]["text"] == "Title: Heat (1995)"
    assert data.interactions.column("row").to_pylist() == [1, 2]


@pytest.mark.parametrize(
    ("u_data", "line", "field", "message"),
    [
        ("7\t1\t5\t100\n7\t2\t5\n", 2, "timestamp", "expected 4 tab-separated fields"),
        ("7\t1\tfive\t100\n", 1, "rating", "'five' is not an integer"),
        ("7\t1\t5\t100\n7\t3\t5\t100\n", 2, "item_id", "item 3 is not in"),
        ("", None, None, "empty"),
    ],
)
def test_bad_ratings(tmp_path, u_data, line, field, message):
    folder = write_movielens(tmp_path / "m", u_data)
    with pytest.raises(DataError, match=message) as err:
        DATASETS["movielens_100k"].load(folder)
    assert (err.value.file, err.value.line, err.value.field) == (
        str(folder / "u.data"),
        line,
        field,
    )


def test_bad_movie_line(tmp_path):
    folder = write_movielens(
        tmp_path / "m", "7\t1\t5\t100\n", item_line="1|Amélie (2001)|01-Jan-2001|x|0|1"
    )
    with pytest.raises(DataError, match="expected 7 '|'-separated fields, got 6") as err:
        DATASETS["movielens_100k"].load(folder)
    assert (err.value.file, err.value.line) == (str(folder / "u.item"), 1)


def test_unknown_sports_item(tmp_path, data_dir):
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("datamaps.json", "Sports_and_Outdoors_item2attributes.json"):
        shutil.copy(data_dir / "amazon_sports" / name, folder / name)
    (folder / "Sports_and_Outdoors.txt").write_text("1 1 2\n2 99999\n")
    with pytest.raises(DataError, match="item 99999 is not in the item catalog") as err:
        DATASETS["sports"].load(folder)
    assert (err.value.line, err.value.field) == (2, "item_id")


# --- text rendering -------------------------------------------------------------------


def test_render_item_text():
    assert render_item_text("") == ""
    assert render_item_text("", brand="", categories=[], extra={"Genres": ""}) == ""
    assert render_item_text(
        "Serum", brand="Acme", categories=["Skin Care", "Face"], extra={"Size": "5 ml"}
    ) == ("Title: Serum\nBrand: Acme\nCategory: Skin Care > Face\nSize: 5 ml")
    assert render_item_text("", categories=["A"]) == "Category: A"
