"""Tags from category paths, missing levels, and reading SIDs through tags."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.data import DataError
from sidrec.tokenizers.tags import majority_tags, read_tag_paths, tag_centroids, tags_from_paths

PATHS = [
    ["Skin Care", "Face", "Serums"],
    ["Skin Care", "Face", "Masks"],
    ["Makeup", "Face"],  # another "Face": a different class, and no level-2 tag
    ["Makeup"],
    [],
]


def test_classes_are_path_prefixes_and_short_paths_are_missing():
    tags = tags_from_paths(PATHS, levels=3)
    assert tags.keys[0] == ["Skin Care", "Makeup"]
    assert tags.keys[1] == ["Skin Care > Face", "Makeup > Face"]
    assert tags.text[1] == ["Face", "Face"]
    np.testing.assert_array_equal(
        tags.ids, [[0, 0, 0], [0, 0, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1]]
    )
    assert tags.coverage() == pytest.approx([0.8, 0.6, 0.4])


def test_a_level_nobody_reaches_is_an_error_naming_the_field():
    with pytest.raises(DataError, match="level-3 tag") as err:
        tags_from_paths(PATHS, levels=4)
    assert err.value.field == "categories"


def test_majority_tags_read_a_sid_as_a_path():
    tags = tags_from_paths(PATHS, levels=3)
    codes = np.array([[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0], [2, 0, 0]])
    text, purity = majority_tags(codes, tags)
    assert text[0] == ["Skin Care", "Face", "Serums"]
    assert text[1] == ["Skin Care", "Face", "Masks"]
    assert text[2][:2] == ["Makeup", "Face"] and text[2][2] == ""
    assert text[4] == ["", "", ""]  # untagged item alone on its codes
    assert purity == [1.0, 1.0, 1.0]
    # Two Skin Care items on one level-0 code with a Makeup item: 2 of 3 right.
    _, purity = majority_tags(np.array([[0], [0], [0], [1], [2]]), tags)
    assert purity[0] == pytest.approx(3 / 4)


def test_tag_centroids_are_unit_means():
    tags = tags_from_paths(PATHS, levels=1)
    emb = np.array([[1, 0], [3, 0], [0, 1], [0, 1], [5, 5]], dtype=np.float32)
    (table,) = tag_centroids(emb, tags)
    np.testing.assert_allclose(table, [[1, 0], [0, 1]], atol=1e-6)


def test_tags_file_reading_and_errors(tmp_path):
    good = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"item_id": [2, 0], "tags": [["A", "B"], ["C"]]}), good)
    assert read_tag_paths(good, 3) == [["C"], None, ["A", "B"]]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"item_id": [7], "tags": [["A"]]}), bad)
    with pytest.raises(DataError, match="outside the catalog"):
        read_tag_paths(bad, 3)
    with pytest.raises(DataError, match="not found"):
        read_tag_paths(tmp_path / "missing.parquet", 3)
