"""Every job through `ray job submit --working-dir . -- python jobs/X.py` against a real
local `ray start --head` (its own ports and temp dir, token auth on), on the real
MovieLens-100k data (1,682 items: small enough that every stage runs in seconds).

How `sidrec` gets into the job (checked below): the entrypoint is a shell command
run with the environment of `ray start`, so `python` is whichever python is first
on PATH there. With this venv on PATH and `pip install -e .` in it, jobs import
`sidrec` from the install (the checkout on that node), not from the uploaded
working dir; `--runtime-env-json '{"env_vars": {"PYTHONPATH": "platform"}}'`
makes them import the uploaded copy instead, which is what these submissions use.
Without the venv on PATH at `ray start`, `python` is the system one:
ModuleNotFoundError: No module named 'sidrec'.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNTIME_ENV = json.dumps({"env_vars": {"PYTHONPATH": "platform"}})
DATASET = "movielens_100k"


def _free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def _pids_using(marker: str) -> list[int]:
    """Processes whose command line names `marker` (this test's Ray temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _stop(marker: str) -> None:
    """Stop this test's Ray only, by pid (`ray stop` would stop every Ray on the machine)."""
    pids = _pids_using(marker)
    pids += [c for p in pids for c in _children(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(3)


@pytest.fixture(scope="module")
def ray_head():
    temp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: Ray's socket paths
    (gcs, dash, agent, agent_grpc, runtime_env, metrics, client, node, objects) = _free_ports(9)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the venv, as when it is activated
        RAY_AUTH_MODE="token",  # one mode for server and client (docs/ARCHITECTURE.md, Ray pitfalls)
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_USAGE_STATS_ENABLED="0",
    )
    start = [
        str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--disable-usage-stats",
        f"--temp-dir={temp}", f"--port={gcs}", f"--dashboard-port={dash}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client}", f"--node-manager-port={node}",
        f"--object-manager-port={objects}", "--object-store-memory=300000000",
    ]  # fmt: skip
    try:
        proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield f"http://127.0.0.1:{dash}", env
    finally:
        _stop(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


def _submit(ray_head, *entrypoint: str, runtime_env: str | None = RUNTIME_ENV, timeout=300):
    address, env = ray_head
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO)]
    if runtime_env:
        cmd += ["--runtime-env-json", runtime_env]
    proc = subprocess.run(
        [*cmd, "--", *entrypoint],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_sidrec_is_importable_in_the_job_driver(ray_head):
    probe = "import sidrec, sys; print('SIDREC', sidrec.__file__, sys.executable)"
    code, out = _submit(ray_head, "python", "-c", probe)
    assert code == 0, out
    line = next(s for s in out.splitlines() if s.startswith("SIDREC "))
    # The uploaded working dir (runtime_resources/working_dir_files/...), this venv's python.
    assert "working_dir_files" in line and line.endswith(str(BIN / "python"))
    code, out = _submit(ray_head, "python", "-c", probe, runtime_env=None)
    assert code == 0, out  # without PYTHONPATH: the editable install of this venv
    assert "SIDREC " in out and "working_dir_files" not in out.split("SIDREC ")[1].split()[0]


def test_a_client_without_the_token_is_refused(ray_head):
    address, env = ray_head
    anonymous = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    anonymous["HOME"] = tempfile.mkdtemp()  # no ~/.ray/auth_token to fall back on
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", address],
        env=anonymous, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "token" in (proc.stdout + proc.stderr).lower()


def test_every_job_runs_under_ray_job_submit(ray_head, data_dir, tmp_path):
    root = tmp_path / DATASET
    common = ["--dataset", DATASET, "--data-dir", str(data_dir), "--artifact-root", str(root)]
    tiny_vae = [
        "--epochs",
        "2",
        "--codebook-size",
        "16",
        "--batch-size",
        "512",
        "--set",
        "hidden_dims=64",
        "--set",
        "latent_dim=16",
        "--set",
        "kmeans_iters=5",
    ]
    jobs = [
        ["jobs/ingest.py"],
        ["jobs/evaluate.py", "--model", "mostpop"],
        ["jobs/embed_catalog.py", "--max-length", "32", "--batch-size", "128"],
        ["jobs/train_rqkmeans.py", "--codebook-size", "16", "--set", "kmeans_iters=5"],
        ["jobs/train_rqvae.py", *tiny_vae],
        # MovieLens has no category path: its first genre is the one tag level
        # (a tags file, as the tags stage writes for such datasets).
        ["jobs/train_hidvae.py", *tiny_vae, "--set", "tag_levels=1", "--tags", str(tmp_path / "tags.parquet")],
        ["jobs/train_recommender.py", "--model", "sasrec", "--epochs", "1", "--max-users", "200",
         "--arch", json.dumps({"d_model": 16, "num_layers": 1, "num_heads": 1, "ffn_dim": 16,
                               "dropout": 0.1, "max_len": 20, "loss": "ce"})],
        # The headline job, end to end with tiny settings (tests/jobs/test_train_lamia.py's).
        ["jobs/train_lamia.py", "--set", "train_items=256", "--set", "batch_size=32",
         "--set", "codebook_size=32", "--set", "pca_dim=16", "--set", "kmeans_iters=5",
         "--set", "backbone.decoder_dim=64", "--set", "backbone.decoder_ffn=128",
         "--set", "backbone.decoder_layers=1", "--set", "backbone.max_content_tokens=32",
         "--set", "backbone.max_answer_tokens=12", "--rec-max-users", "40",
         "--rec-time-budget-s", "1", "--rec-epochs", "1"],
    ]  # fmt: skip
    for job in jobs:
        code, out = _submit(ray_head, "python", *job, *common)
        assert code == 0 and "succeeded" in out, f"{job[0]} failed:\n{out[-4000:]}"
        if job[0] == "jobs/ingest.py":
            _write_genre_tags(root, tmp_path / "tags.parquet")

    assert (root / "catalog" / "items.parquet").is_file()
    assert len(list((root / "embeddings").glob("*.parquet"))) == 1
    assert len(list((root / "sids").glob("*.parquet"))) == 4  # rqkmeans, rqvae, hidvae, lamia
    assert any(p.name.startswith("sasrec") for p in (root / "eval").glob("*.json"))

    from mlflow import MlflowClient

    store = f"sqlite:///{root / 'mlflow.db'}"
    # registry_uri too: an earlier test in this process may have set the global one.
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    names = {m.name for m in client.search_registered_models()}
    assert {f"sidrec-tokenizer-{t}-{DATASET}" for t in ("rqkmeans", "rqvae", "hidvae")} <= names
    assert f"sidrec-sasrec-{DATASET}" in names
    assert {f"sidrec-tokenizer-lamia-{DATASET}", f"sidrec-lamia-{DATASET}"} <= names


def _write_genre_tags(root: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = pq.read_table(root / "catalog" / "items.parquet", columns=["item_id", "genres"])
    tags = [[g.split(" | ")[0]] if g else [] for g in items.column("genres").to_pylist()]
    pq.write_table(pa.table({"item_id": items.column("item_id"), "tags": tags}), path)


def test_a_failing_job_fails_the_submission(ray_head, tmp_path):
    code, out = _submit(
        ray_head, "python", "jobs/evaluate.py", "--dataset", "nope",
        "--artifact-root", str(tmp_path / "x"),
    )  # fmt: skip
    assert code != 0 and "failed" in out.lower()
