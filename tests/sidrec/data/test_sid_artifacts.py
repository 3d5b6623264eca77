"""SID-table and embedding artifacts: round trips and the errors a user would hit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.data import DataError
from sidrec.data.embeddings import load_embeddings
from sidrec.data.sids import SidTable, disambiguate, read_sid_table, write_sid_table


def test_disambiguate_numbers_items_within_each_sid():
    codes = np.array([[1, 2], [1, 2], [0, 1], [1, 2], [0, 1], [3, 3]])
    assert disambiguate(codes).tolist() == [0, 1, 0, 2, 1, 0]


def test_sid_table_round_trip(tmp_path):
    codes = np.array([[1, 2], [1, 2], [0, 3]])
    table = SidTable(codes, disambiguate(codes), [4, 4], tags=[["a", "b"], ["a", "b"], ["c", "d"]])
    write_sid_table(tmp_path / "sids/run.parquet", table, {"learner": "rqkmeans"})
    back = read_sid_table(tmp_path / "sids/run.parquet", num_items=3)
    assert back.full_codes().tolist() == [[1, 2, 0], [1, 2, 1], [0, 3, 0]]
    assert back.full_codebook_sizes() == [4, 4, 2]
    assert back.tags[2] == ["c", "d"] and back.meta["learner"] == "rqkmeans"
    with pytest.raises(DataError, match="the catalog 5"):
        read_sid_table(tmp_path / "sids/run.parquet", num_items=5)


def test_sid_table_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="train a tokenizer first") as err:
        read_sid_table(tmp_path / "missing.parquet")
    assert err.value.file.endswith("missing.parquet")


def write_embeddings(path, ids, rows):
    flat = pa.array(np.asarray(rows, dtype=np.float32).ravel())
    emb = pa.FixedSizeListArray.from_arrays(flat, len(rows[0]))
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.int32()), "embedding": emb}), path)


def test_embeddings_come_back_in_item_order(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_embeddings(tmp_path / "e.parquet", [2, 0, 3, 1], rows[[2, 0, 3, 1]])
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.parquet", num_items=4), rows)


def test_bad_embeddings_name_row_and_field(tmp_path):
    rows = np.ones((3, 2), dtype=np.float32)
    rows[1, 0] = np.nan
    write_embeddings(tmp_path / "nan.parquet", [0, 1, 2], rows)
    with pytest.raises(DataError, match="NaN") as err:
        load_embeddings(tmp_path / "nan.parquet")
    assert (err.value.row, err.value.field) == (1, "embedding")
    write_embeddings(tmp_path / "gap.parquet", [0, 2, 3], np.ones((3, 2)))
    with pytest.raises(DataError, match="0..N-1"):
        load_embeddings(tmp_path / "gap.parquet")
    ragged = pa.table({"item_id": pa.array([0, 1], pa.int32()), "embedding": [[1.0, 2.0], [1.0]]})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(DataError, match="dimensions disagree") as err:
        load_embeddings(tmp_path / "ragged.parquet")
    assert err.value.row == 1
