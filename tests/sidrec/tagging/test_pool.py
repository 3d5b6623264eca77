"""Tag pools: trees from category paths, flat pools, taxonomy files, and bad input named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidrec.data import DataError
from sidrec.tagging import load_taxonomy, pool_from_paths

PATHS = [
    ["Makeup", "Face", "Foundation"],
    ["Skin Care", "Face", "Serums"],
    ["Makeup", "Nails"],
    ["Makeup", "Face", "Powder"],
    None,
    [],
]


def test_tree_pool_keeps_same_name_under_two_parents_apart():
    pool = pool_from_paths(PATHS, levels=3)
    assert pool.tree and pool.names[0] == ("Makeup", "Skin Care")
    # "Face" under Makeup and under Skin Care are two tags with different parents.
    assert pool.names[1] == ("Face", "Face", "Nails") and pool.parents[1] == (0, 1, 0)
    assert pool.texts(1) == ["Makeup > Face", "Skin Care > Face", "Makeup > Nails"]
    assert pool.path(2, 2) == ["Makeup", "Face", "Powder"]
    np.testing.assert_array_equal(pool.candidates(1, parent=0), [0, 2])
    np.testing.assert_array_equal(pool.candidates(2, parent=1), [1])  # Skin Care > Face
    np.testing.assert_array_equal(pool.candidates(2, parent=2), [])  # Nails is a leaf
    np.testing.assert_array_equal(pool.candidates(0, parent=None), [0, 1])


def test_flat_pool_merges_names_and_has_no_restriction():
    pool = pool_from_paths(PATHS, levels=2, tree=False)
    assert not pool.tree and pool.names[1] == ("Face", "Nails")
    np.testing.assert_array_equal(pool.candidates(1, parent=0), [0, 1])
    assert pool.texts(1) == ["Face", "Nails"]


def test_taxonomy_tree_and_levels_files(tmp_path):
    yaml_file = tmp_path / "tax.yaml"
    yaml_file.write_text(
        "tree:\n  Restaurants:\n    Italian: {}\n    Pizza: [Neapolitan]\n  Shopping: [Tobacco Shops]\n"
    )
    pool = load_taxonomy(yaml_file)
    assert pool.levels == 3 and pool.names[0] == ("Restaurants", "Shopping")
    assert pool.path(2, 0) == ["Restaurants", "Pizza", "Neapolitan"]
    assert [pool.names[1][j] for j in pool.candidates(1, 1)] == ["Tobacco Shops"]

    flat = tmp_path / "tax.json"
    flat.write_text(json.dumps({"levels": [["Restaurants", "Nightlife"], ["Bars", "Pizza"]]}))
    pool = load_taxonomy(flat, levels=2)
    assert not pool.tree and pool.sizes == [2, 2]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"levels": [["Restaurants"], []]}', "level 1"),  # an empty pool level
        ('{"levels": [["Restaurants", 3]]}', "levels[0]"),
        ('{"tree": {"Restaurants": 5}}', "tree.Restaurants"),
        ('{"tags": []}', "`tree` or `levels`"),
        ("{not json", "not valid YAML/JSON"),
    ],
)
def test_bad_taxonomy_names_file_and_key(tmp_path, text, where):
    path = tmp_path / "tax.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_taxonomy(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_empty_pool_is_named():
    with pytest.raises(DataError, match="no tag at level 0"):
        pool_from_paths([None, []], levels=2, source="items.parquet")
    with pytest.raises(DataError, match="no tag at level 2: lower --levels to 2"):
        pool_from_paths([["Makeup", "Nails"]], levels=3, source="items.parquet")
