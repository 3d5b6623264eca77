"""Model tests: one intra-op thread (tiny tensors; on a busy 2-core box OpenMP
fan-out costs more than it saves), and a category-derived SID table for Beauty."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def load_sid_helpers():
    spec = importlib.util.spec_from_file_location("sid_helpers", HERE / "sid_helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def beauty_sids(beauty_root) -> Path:
    return load_sid_helpers().write_category_sids(beauty_root)
