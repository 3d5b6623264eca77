"""Fixtures the bench tests share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bundles(write_bundles, beauty_root, tmp_path_factory):
    """{kind: bundle folder}: one tiny bundle per model kind on the real Beauty catalog."""
    return write_bundles(beauty_root, tmp_path_factory.mktemp("bundles"))
