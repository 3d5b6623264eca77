"""Fixtures for the tagging tests: a tiny random causal LM on disk, a slice of real Beauty."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SLICE = 100  # real items: enough to cover several Beauty categories, seconds on 2 cores


def _helpers():
    path = Path(__file__).with_name("tiny_lm.py")
    spec = importlib.util.spec_from_file_location("tagging_tiny_lm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    return _helpers().save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def beauty_items(beauty_root) -> pa.Table:
    """Every 120th row of the ingested Beauty catalog (100 items across categories)."""
    table = pq.read_table(beauty_root / "catalog" / "items.parquet")
    return table.take(list(range(0, table.num_rows, table.num_rows // SLICE))[:SLICE])
