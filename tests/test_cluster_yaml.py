"""cluster.yaml: Ray's own cluster-launcher validation (the JSON schema `ray up` applies,
after the same default filling), plus what this project needs from it."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def _validated(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_validates_the_cluster_config(config):
    prepared = _validated(config)
    assert prepared["head_node_type"] == "head"
    assert prepared["cluster_name"] == "sidrec"


def test_cpu_head_and_gpu_workers_on_ray_260_images(config):
    nodes = config["available_node_types"]
    assert nodes["head"]["resources"].get("GPU", 0) == 0
    gpu_types = [n for n, spec in nodes.items() if spec["resources"].get("GPU", 0) >= 1]
    assert {"gpu_a10g", "gpu_h100"} <= set(gpu_types)
    image = config["docker"]["image"]
    assert image.startswith("rayproject/ray:2.60.0") and image.endswith("-gpu")
    assert "--gpus all" in config["docker"]["worker_run_options"]
    assert any("[gpu]" in c and "pip install" in c for c in config["setup_commands"])


def test_token_auth_mlflow_server_and_shared_storage(config):
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in ray_starts)
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    head = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "--artifacts-destination s3://" in head
    # Every node reaches the one tracking server over HTTP, never a local SQLite file.
    assert all("MLFLOW_TRACKING_URI=http://" in c for c in ray_starts)
    assert any("SIDREC_ARTIFACT_ROOT=/mnt/efs" in c for c in config["setup_commands"])


@pytest.mark.parametrize(
    "breaks",
    [
        lambda c: c.update(max_worker=3),  # a misspelled top-level key
        lambda c: c["available_node_types"]["gpu_a10g"].update(min_workers="two"),
        lambda c: c["docker"].update(image=["not", "a", "string"]),
    ],
)
def test_the_validation_catches_a_broken_config(config, breaks):
    broken = copy.deepcopy(config)
    breaks(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _validated(broken)


def test_the_head_type_must_exist(config):
    broken = copy.deepcopy(config)
    broken["head_node_type"] = "cpu_head"
    with pytest.raises(ValueError, match="head_node_type"):
        _validated(broken)


def test_kuberay_examples_match_the_project():
    job = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["rayClusterSpec"]["rayVersion"] == "2.60.0"
    words = job["spec"]["entrypoint"].split()
    assert (REPO / words[1]).is_file()  # jobs/sweep.py
    assert (REPO / words[words.index("--space") + 1]).is_file()
    assert job["spec"]["rayClusterSpec"]["authOptions"]["mode"] == "token"

    service = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    served = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    local = yaml.safe_load((REPO / "serve_apps" / "config.yaml").read_text())["applications"][0]
    assert served["import_path"] == local["import_path"]
    assert set(served["args"]) <= set(local["args"]) | {"tracking_uri"}
    assert [d["name"] for d in served["deployments"]] == [d["name"] for d in local["deployments"]]
    assert set(served["deployments"][0]["user_config"]) <= set(
        local["deployments"][0]["user_config"]
    )
