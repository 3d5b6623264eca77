"""Shared fixtures: the real datasets (via SIDREC_DATA_DIR), one ingest of Beauty per
session, one local Ray per module, and offline-friendly settings for every test."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVING_CONFTEST = REPO / "tests" / "sidrec" / "serving" / "conftest.py"

# Settings from docs/ARCHITECTURE.md ("Ray pitfalls") for small machines; tests never phone home.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A test must never write into a developer's real tracking server.
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """A test that exports MLFLOW_TRACKING_URI (mlflow.set_tracking_uri does) would
    send every later test's runs, and any `ray start` they launch, to its store."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from sidrec.data.locate import ENV_DATA_DIR, resolve_data_dir

    if not os.environ.get(ENV_DATA_DIR):
        pytest.fail(f"set {ENV_DATA_DIR} to the folder of the real datasets (README, 'Data')")
    return resolve_data_dir()


@pytest.fixture(scope="session")
def beauty_root(tmp_path_factory, data_dir) -> Path:
    """Amazon Beauty ingested once per session (no MLflow) for tests that read it."""
    from sidrec.data import ensure_ingested

    root = tmp_path_factory.mktemp("beauty")
    ensure_ingested("beauty", root, data_dir=data_dir, track=False)
    return root


@pytest.fixture(scope="module")
def ray_session():
    """One small local Ray per test module (~3 s to start)."""
    import ray

    from sidrec.distributed import init_ray

    if ray.is_initialized():
        ray.shutdown()
    saved = os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2, object_store_memory=256 * 1024**2)
    yield ray
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


@pytest.fixture(scope="session")
def load_job():
    """Import jobs/<name>.py as a module (jobs are scripts, not a package)."""
    return lambda name: _load_script("jobs", name)


@pytest.fixture(scope="session")
def load_bench():
    """Import bench/<name>.py as a module (benches are scripts, not a package)."""
    return lambda name: _load_script("bench", name)


def _load_script(folder: str, name: str):
    path = REPO / folder / f"{name}.py"
    if str(path.parent) not in sys.path:  # as when run: a script imports its siblings
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def write_bundles() -> Callable[..., dict[str, Path]]:
    """write_bundles(root, out, seed=0) -> {"sasrec" | "tiger" | ...: bundle folder}, the
    randomly initialized bundles of tests/sidrec/serving/conftest.py (one definition
    for the serving, Serve app and bench tests)."""
    # Loaded on first use: the module imports torch and every model.
    spec = importlib.util.spec_from_file_location("serving_conftest", SERVING_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_bundles
