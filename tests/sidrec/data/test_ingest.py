"""Ingest: canonical tables, leave-one-out splits, manifests, no-op re-runs, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.data import DataError, RawDataset, load_split, train_item_counts, train_sequences
from sidrec.data.ingest import IngestConfig, Sequences, build_splits, ingest_raw, kcore_mask
from sidrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SPLIT_SCHEMA


def raw_dataset(tmp_path: Path, sequences: dict[str, list[str]], items: list[str]) -> RawDataset:
    """A RawDataset as a loader would return it, backed by a real interactions file."""
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u} {' '.join(s)}\n" for u, s in sequences.items()))
    users, item_ids, stamps, rows = [], [], [], []
    for line, (user, seq) in enumerate(sequences.items(), start=1):
        for pos, item in enumerate(seq):
            users.append(user)
            item_ids.append(item)
            stamps.append(pos)
            rows.append(line)
    return RawDataset(
        name="toy",
        items=pa.table(
            {
                "source_id": items,
                "title": [f"t{i}" for i in items],
                "text": [f"Title: t{i}" for i in items],
                "categories": [["A", f"B{i}"] for i in items],
                "brand": ["x"] * len(items),
            }
        ),
        interactions=pa.table(
            {
                "user": users,
                "item": item_ids,
                "timestamp": pa.array(stamps, pa.int64()),
                "row": pa.array(rows, pa.int64()),
            }
        ),
        has_timestamps=False,
        interactions_file=path,
        items_file=None,
        input_files=[path],
    )


TOY = {"u1": ["a", "b", "c", "d", "e"], "u2": ["c", "a", "b"], "u3": ["e", "d"]}


def test_toy_ingest_writes_the_contract(tmp_path):
    raw = raw_dataset(tmp_path, TOY, ["a", "b", "c", "d", "e", "f"])
    result = ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out"), max_history=2), kcore=0)
    root = result.artifact_root
    items = pq.read_table(root / "catalog/items.parquet")
    assert items.schema.names[:5] == ITEMS_SCHEMA.names
    assert items.schema.field("brand").type == pa.string()
    # No k-core: the whole catalog stays, the never-seen item "f" included.
    assert items.column("source_id").to_pylist() == ["a", "b", "c", "d", "e", "f"]
    assert items.column("item_id").to_pylist() == list(range(6))
    inter = pq.read_table(root / "catalog/interactions.parquet")
    assert inter.schema.equals(INTERACTIONS_SCHEMA)
    assert inter.column("item_id").to_pylist() == [0, 1, 2, 3, 4, 2, 0, 1, 4, 3]

    test = pq.read_table(root / "splits/test.parquet")
    assert test.schema.equals(SPLIT_SCHEMA)
    assert test.to_pylist() == [
        {"user_id": 0, "history": [2, 3], "target": 4},  # capped at max_history=2
        {"user_id": 1, "history": [2, 0], "target": 1},
    ]
    valid = pq.read_table(root / "splits/valid.parquet").to_pylist()
    assert valid == [
        {"user_id": 0, "history": [1, 2], "target": 3},
        {"user_id": 1, "history": [2], "target": 0},
    ]
    train = pq.read_table(root / "splits/train.parquet").to_pylist()
    # u1 trains on positions 1..2; u3 has 2 items: train only, position 1.
    assert train == [
        {"user_id": 0, "history": [0], "target": 1},
        {"user_id": 0, "history": [0, 1], "target": 2},
        {"user_id": 2, "history": [4], "target": 3},
    ]
    counts = result.manifest["counts"]
    assert counts["users_train_only"] == 1
    assert counts["items_without_interactions"] == 1
    assert counts["splits"] == {"train": 3, "valid": 2, "test": 2}


def test_train_sequences_hold_out_valid_and_test(tmp_path):
    raw = raw_dataset(tmp_path, TOY, ["a", "b", "c", "d", "e"])
    root = ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out")), kcore=0).artifact_root
    seqs = train_sequences(root)
    assert [seqs.user(u).tolist() for u in range(3)] == [[0, 1, 2], [2], [4, 3]]
    assert train_item_counts(root, 5).tolist() == [1, 1, 2, 1, 1]


def test_kcore_is_iterative():
    # Item 2 has one interaction; dropping it leaves user 1 with one, then user 1 goes.
    users = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 3, 1, 2, 0, 1, 3])
    keep = kcore_mask(users, items, 2)
    assert keep.tolist() == [True, True, True, False, False, True, True, True]
    assert kcore_mask(users, items, 0).all()


def test_build_splits_on_sequences():
    seqs = Sequences(np.array([5, 6, 7, 8]), np.array([0, 4]))
    splits = build_splits(seqs, max_history=20)
    assert splits["test"].to_pylist() == [{"user_id": 0, "history": [5, 6, 7], "target": 8}]
    assert splits["train"].column("target").to_pylist() == [6]


def test_unknown_item_names_file_line_and_field(tmp_path):
    raw = raw_dataset(tmp_path, {"u1": ["a", "zz", "b"]}, ["a", "b"])
    with pytest.raises(DataError) as err:
        ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out")), kcore=0)
    assert err.value.file == str(tmp_path / "seq.txt")
    assert err.value.line == 1 and err.value.field == "item"
    assert "'zz'" in str(err.value)
    assert not (tmp_path / "out" / "catalog").exists()


def test_empty_catalog_and_duplicates_are_errors(tmp_path):
    raw = raw_dataset(tmp_path, {"u1": ["a"]}, [])
    with pytest.raises(DataError, match="catalog is empty"):
        ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out")), kcore=0)
    raw = raw_dataset(tmp_path, {"u1": ["a"]}, ["a", "a"])
    with pytest.raises(DataError, match="more than once") as err:
        ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out")), kcore=0)
    assert err.value.field == "source_id"


def test_kcore_that_removes_everything_is_an_error(tmp_path):
    raw = raw_dataset(tmp_path, {"u1": ["a", "b"]}, ["a", "b"])
    with pytest.raises(DataError, match="removed every interaction"):
        ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out")), kcore=5)


def test_rerun_is_a_noop_and_a_crash_keeps_the_old_artifacts(tmp_path, monkeypatch):
    raw = raw_dataset(tmp_path, TOY, ["a", "b", "c", "d", "e"])
    cfg = IngestConfig("toy", str(tmp_path / "out"))
    first = ingest_raw(raw, cfg, kcore=0)
    items = first.artifact_root / "catalog/items.parquet"
    stamp = items.stat().st_mtime_ns
    again = ingest_raw(raw, cfg, kcore=0)
    assert again.skipped and items.stat().st_mtime_ns == stamp

    # A new config whose write dies half-way leaves the previous run untouched.
    real_write = pq.write_table
    calls = {"n": 0}

    def dying_write(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", dying_write)
    with pytest.raises(OSError, match="disk full"):
        ingest_raw(raw, IngestConfig("toy", str(tmp_path / "out"), max_history=1), kcore=0)
    monkeypatch.undo()
    manifest = json.loads((first.artifact_root / "catalog/manifest.json").read_text())
    assert manifest["fingerprint"] == first.manifest["fingerprint"]
    assert items.stat().st_mtime_ns == stamp
    leftovers = [p.name for p in first.artifact_root.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert ingest_raw(raw, cfg, kcore=0).skipped


def test_tampered_output_is_rebuilt(tmp_path):
    raw = raw_dataset(tmp_path, TOY, ["a", "b", "c", "d", "e"])
    cfg = IngestConfig("toy", str(tmp_path / "out"))
    root = ingest_raw(raw, cfg, kcore=0).artifact_root
    (root / "splits/test.parquet").write_bytes(b"garbage")
    result = ingest_raw(raw, cfg, kcore=0)
    assert not result.skipped
    assert len(load_split(root, "test")) == 2


@pytest.mark.slow
def test_beauty_reproduces_the_standard_counts(beauty_root):
    manifest = json.loads((beauty_root / "catalog/manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (22363, 12101, 198502)
    assert counts["splits"] == {"train": 198502 - 3 * 22363, "valid": 22363, "test": 22363}
    assert manifest["has_timestamps"] is False and "position" in manifest["order"]
    assert {Path(r["path"]).name for r in manifest["inputs"]} >= {"Beauty.txt"}
    assert all(len(r["sha256"]) == 64 for r in manifest["inputs"])
    assert manifest["versions"]["pyarrow"] == pa.__version__

    items = pq.read_table(beauty_root / "catalog/items.parquet")
    first = items.slice(0, 1).to_pylist()[0]
    assert first["source_id"] == "B004756YJA"
    assert first["categories"] == ["Makeup", "Nails", "Nail Polish"]  # root "Beauty" dropped
    test = load_split(beauty_root, "test")
    assert max(np.diff(test.history_offsets)) == 20
    # Beauty.txt starts "1 1 2 3 4 5" / "2 6 7 8 9 10 4 11": dense ids are source ids - 1.
    assert test.history(0).tolist() == [0, 1, 2, 3] and test.targets[0] == 4
    assert test.history(1).tolist() == [5, 6, 7, 8, 9, 3] and test.targets[1] == 10
