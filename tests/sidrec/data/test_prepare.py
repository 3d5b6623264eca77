"""ensure_ingested and --dataset: a dataset is what its artifact root holds; raw
data is asked for only when ingest must run."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from sidrec.cli import add_common_args, artifact_root
from sidrec.data import DataError, ensure_ingested
from sidrec.data.ingest import IngestConfig, ingest_raw


def _toy():
    path = Path(__file__).with_name("test_ingest.py")
    spec = importlib.util.spec_from_file_location("ingest_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    monkeypatch.delenv("SIDREC_DATA_DIR", raising=False)


def ingested(tmp_path: Path, name: str) -> Path:
    toy = _toy()
    raw = toy.raw_dataset(tmp_path, toy.TOY, ["a", "b", "c", "d", "e"])
    root = tmp_path / name
    ingest_raw(raw, IngestConfig(name, str(root)), kcore=0)
    return root


@pytest.mark.parametrize("name", ["shop", "beauty"])
def test_an_ingested_root_needs_no_raw_data(tmp_path, name):
    root = ingested(tmp_path, name)
    result = ensure_ingested(name, root, track=False)
    assert result.skipped and result.manifest["dataset"] == name


def test_a_public_dataset_asks_for_raw_data_only_when_it_must_ingest(tmp_path):
    with pytest.raises(DataError, match="SIDREC_DATA_DIR"):
        ensure_ingested("beauty", tmp_path / "empty", track=False)


def test_an_unknown_name_without_an_ingest_says_how_to_ingest(tmp_path):
    with pytest.raises(DataError, match="jobs/ingest.py --dataset shop --custom"):
        ensure_ingested("shop", tmp_path / "empty", track=False)


def test_a_damaged_ingest_is_not_used(tmp_path):
    root = ingested(tmp_path, "shop")
    (root / "splits" / "test.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no complete ingest of dataset 'shop'"):
        ensure_ingested("shop", root, track=False)


def test_another_history_length_needs_a_reingest(tmp_path):
    root = ingested(tmp_path, "shop")
    with pytest.raises(DataError, match="max_history=20, not kcore=None, max_history=5"):
        ensure_ingested("shop", root, max_history=5, track=False)


def test_dataset_name_comes_from_the_root(tmp_path):
    root = ingested(tmp_path, "shop")
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args(["--artifact-root", str(root)])
    assert artifact_root(args) == root.resolve() and args.dataset == "shop"
    args = parser.parse_args(["--artifact-root", str(tmp_path / "nothing-yet")])
    artifact_root(args)
    assert args.dataset == "beauty"
    args = parser.parse_args(["--dataset", "other", "--artifact-root", str(root)])
    artifact_root(args)
    assert args.dataset == "other"  # an explicit name wins; ensure_ingested refuses it
    with pytest.raises(DataError, match="holds dataset 'shop', not 'other'"):
        ensure_ingested(args.dataset, root, track=False)
