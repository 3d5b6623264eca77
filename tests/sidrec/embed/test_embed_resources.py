"""Sizing the actor pool and refusing what cannot run, from the cluster's resources (no Ray
here; test_ray_embed.py checks the same against a real local Ray)."""

from __future__ import annotations

import pytest

from sidrec.embed import (
    EmbedConfig,
    ResourceError,
    check_resources,
    get_backend,
    plan_resources,
    vllm_encoder,
)

CPU_BOX = {"CPU": 2.0}
GPU_BOX = {"CPU": 16.0, "GPU": 4.0}


def plan(cfg, resources):
    return plan_resources(cfg, get_backend(cfg.encoder.backend), resources)


def check(cfg, resources, installed=()):
    check_resources(
        cfg, get_backend(cfg.encoder.backend), resources, lambda name: name in installed
    )


def shape(cfg):
    return cfg.num_actors, cfg.cpus_per_actor, cfg.threads_per_actor


def test_auto_plan_is_one_single_threaded_actor_per_cpu_leaving_one_for_reads():
    assert shape(plan(EmbedConfig(), CPU_BOX)) == (2, 0.5, 1)
    assert shape(plan(EmbedConfig(), {"CPU": 16.0})) == (16, 15 / 16, 1)
    assert shape(plan(EmbedConfig(), {"CPU": 1.0})) == (1, 0.0, 1)
    for resources in (CPU_BOX, {"CPU": 16.0}, {"CPU": 1.0}):
        check(plan(EmbedConfig(), resources), resources)


def test_plan_keeps_what_the_user_set():
    assert shape(plan(EmbedConfig(num_actors=1), {"CPU": 8.0})) == (1, 7.0, 7)
    assert shape(plan(EmbedConfig(cpus_per_actor=2), {"CPU": 8.0})) == (3, 2.0, 2)
    assert shape(
        plan(EmbedConfig(num_actors=1, cpus_per_actor=1, threads_per_actor=2), CPU_BOX)
    ) == (1, 1, 2)


def test_gpu_plan_is_one_actor_per_gpu():
    assert shape(plan(EmbedConfig(num_gpus=1), GPU_BOX)) == (4, 1.0, 1)
    assert shape(plan(EmbedConfig(num_gpus=0.5), GPU_BOX)) == (8, 1.0, 1)
    assert plan(EmbedConfig(encoder=vllm_encoder("/m")), GPU_BOX).num_actors == 4


def test_gpu_actors_on_a_cpu_cluster_fail_instead_of_hanging():
    with pytest.raises(ResourceError, match="no GPU") as err:
        check(plan(EmbedConfig(num_gpus=1), CPU_BOX), CPU_BOX)
    assert "--num-gpus 0" in str(err.value)
    check(EmbedConfig(num_gpus=1, num_actors=4, cpus_per_actor=1), GPU_BOX)
    with pytest.raises(ResourceError, match="8 actors x 1 GPUs > the cluster's 4 GPUs"):
        check(EmbedConfig(num_gpus=1, num_actors=8, cpus_per_actor=1), GPU_BOX)


def test_actors_that_take_every_cpu_would_starve_the_read_task():
    with pytest.raises(ResourceError, match="read tasks = 3 CPUs > the cluster's 2"):
        check(plan(EmbedConfig(num_actors=2, cpus_per_actor=1), CPU_BOX), CPU_BOX)


def test_vllm_needs_the_package_and_gpus_and_says_both():
    cfg = EmbedConfig(encoder=vllm_encoder("/models/e5"))
    with pytest.raises(ResourceError) as err:
        check(plan(cfg, CPU_BOX), CPU_BOX)
    message = str(err.value)
    assert "needs the `vllm` package" in message and ".[gpu]" in message
    assert "GPU=0" in message and "--backend hf" in message
    with pytest.raises(ResourceError, match="`vllm` package"):
        check(plan(cfg, GPU_BOX), GPU_BOX)
    check(plan(cfg, GPU_BOX), GPU_BOX, installed={"vllm"})
