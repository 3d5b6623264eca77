"""Bad catalogs stop the stage before any Ray work, with a DataError naming file and field."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from sidrec.data import DataError
from sidrec.embed import EmbedConfig, ensure_embedded, load_embeddings
from sidrec.embed.stage import fingerprint, model_record


def _fails(root, cfg: EmbedConfig | None = None) -> DataError:
    with pytest.raises(DataError) as err:
        ensure_embedded(root, cfg or EmbedConfig(), track=False)
    return err.value


def test_missing_catalog_says_to_ingest_first(tmp_path):
    err = _fails(tmp_path)
    assert err.file == str(tmp_path / "catalog" / "items.parquet")
    assert "jobs/ingest.py" in str(err)


def test_missing_text_column(small_root, beauty_items, write_catalog):
    write_catalog(small_root, beauty_items.drop_columns(["text"]))
    err = _fails(small_root)
    assert err.field == "text" and err.file.endswith("catalog/items.parquet")
    assert "missing column" in str(err)


def test_template_column_missing(small_root):
    err = _fails(small_root, EmbedConfig(template="{title} {description}"))
    assert err.field == "description"


def test_null_text_names_the_row(small_root, beauty_items, write_catalog):
    text = beauty_items.column("text").to_pylist()
    text[7] = None
    write_catalog(small_root, beauty_items.set_column(3, "text", pa.array(text, pa.string())))
    err = _fails(small_root)
    assert (err.row, err.field) == (7, "text")


def test_nan_text_names_the_row(small_root, beauty_items, write_catalog):
    n = beauty_items.num_rows
    nan_text = pa.array([1.0] * 3 + [float("nan")] + [1.0] * (n - 4))
    write_catalog(small_root, beauty_items.set_column(3, "text", nan_text))
    err = _fails(small_root)
    assert (err.row, err.field) == (3, "text")


def test_empty_catalog(small_root, beauty_items, write_catalog):
    write_catalog(small_root, beauty_items.slice(0, 0))
    assert "catalog is empty" in str(_fails(small_root))


def test_duplicate_item_ids(small_root, beauty_items, write_catalog):
    write_catalog(small_root, pa.concat_tables([beauty_items, beauty_items.slice(0, 1)]))
    assert _fails(small_root).field == "item_id"


def test_item_ids_out_of_order(small_root, beauty_items, write_catalog):
    # The output's row i is item i, and the streamed rows are checked against 0..N-1.
    write_catalog(small_root, pa.concat_tables([beauty_items.slice(1), beauty_items.slice(0, 1)]))
    err = _fails(small_root)
    assert err.field == "item_id" and "0..N-1 in file order" in str(err)


def test_not_a_parquet_file(small_root):
    (small_root / "catalog" / "items.parquet").write_text("item_id,text\n1,a\n")
    assert "not a readable Parquet file" in str(_fails(small_root))


def test_bad_input_fails_before_ray_is_imported(small_root, beauty_items, write_catalog):
    # The checks run on the driver before the pipeline: no Ray start for a typo.
    write_catalog(small_root, beauty_items.slice(0, 0))
    code = (
        "import sys\n"
        "from sidrec.data import DataError\n"
        "from sidrec.embed import EmbedConfig, ensure_embedded\n"
        "try:\n"
        f"    ensure_embedded({str(small_root)!r}, EmbedConfig(), track=False)\n"
        "except DataError:\n"
        "    print('ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_load_embeddings_without_a_run(tmp_path):
    with pytest.raises(DataError, match="jobs/embed_catalog.py"):
        load_embeddings(tmp_path, "all-minilm-l6-v2")


def test_fingerprint_follows_contents_not_execution_knobs(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\1" * 64)
    record = model_record(str(model))
    base = fingerprint(EmbedConfig(), "abc", record)
    assert fingerprint(EmbedConfig(num_actors=3, rows_per_call=7), "abc", record) == base
    assert fingerprint(EmbedConfig(template="{title}"), "abc", record) != base
    assert fingerprint(EmbedConfig(), "abd", record) != base
    # Retrained weights of the same size are a different model.
    (model / "weights.bin").write_bytes(b"\2" * 64)
    assert fingerprint(EmbedConfig(), "abc", model_record(str(model))) != base
    assert model_record("org/hub-model")["files"] is None
