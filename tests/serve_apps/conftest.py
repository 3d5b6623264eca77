"""What the Serve app tests share: a free local port for Serve's HTTP proxy, and the
tiny Beauty bundles of tests/sidrec/serving/conftest.py.

Fixtures rather than imports: pytest runs with `--import-mode=importlib`, so a test
module cannot import another test module (or a conftest) by name."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

SERVING_CONFTEST = Path(__file__).resolve().parents[1] / "sidrec" / "serving" / "conftest.py"


def _free_port() -> int:
    # Bind port 0 and read back what the OS chose; closed again before Serve binds it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """free_port() -> a local TCP port nothing listens on right now."""
    return _free_port


@pytest.fixture(scope="session")
def write_bundles() -> Callable[..., dict[str, Path]]:
    """write_bundles(root, out, seed=0) -> {"sasrec" | "tiger" | ...: bundle folder}, the
    randomly initialized bundles the serving unit tests use (one definition for both)."""
    # Loaded on first use: the module imports torch and every model.
    spec = importlib.util.spec_from_file_location("serving_conftest", SERVING_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_bundles
