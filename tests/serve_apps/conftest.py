"""What the Serve app tests share: a free local port for Serve's HTTP proxy (the tiny
Beauty bundles come from tests/conftest.py's `write_bundles`).

Fixtures rather than imports: pytest runs with `--import-mode=importlib`, so a test
module cannot import another test module (or a conftest) by name."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def _free_port() -> int:
    # Bind port 0 and read back what the OS chose; closed again before Serve binds it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """free_port() -> a local TCP port nothing listens on right now."""
    return _free_port
