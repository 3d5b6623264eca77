"""`serve run serve_apps/config.yaml`, the command the README gives, serves a model
registered in MLflow: the shipped config with only the model, store and port
changed, run by Serve's own CLI in a fresh process (it starts its own Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from sidrec import tracking

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def register_sasrec(folder: Path, store: Path) -> str:
    import mlflow

    uri = tracking.configure(store)
    with tracking.start_run(store, "beauty", "cli-test", {}, {}) as run:
        mlflow.log_artifacts(str(folder), artifact_path="bundle")
        tracking.register_model(run.info.run_id, "bundle", "sidrec-sasrec-beauty", "candidate")
    return uri


@pytest.mark.slow
def test_serve_run_config_yaml_serves_a_registered_model(
    beauty_root, tmp_path, write_bundles, free_port
):
    import ray

    assert not ray.is_initialized()  # the CLI starts its own Ray; none may be running here
    uri = register_sasrec(write_bundles(beauty_root, tmp_path / "bundles")["sasrec"], tmp_path)
    config = yaml.safe_load((REPO / "serve_apps" / "config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    args = config["applications"][0]["args"]
    args.update(model_uri="models:/sidrec-sasrec-beauty@candidate", tracking_uri=uri, num_cpus=0.5)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    serve_cli = Path(sys.executable).with_name("serve")
    proc = subprocess.Popen(
        [str(serve_cli), "run", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or not routing yet
                pass
            time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        r = requests.post(f"{base}/v1/recommend", json={"history": [], "k": 4}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"name": "sidrec-sasrec-beauty", "version": "1"}
        assert body["cold_start"] and len(body["items"]) == 4
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: serve run shuts down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
