"""Size the actor pool from the cluster, and refuse what cannot run, before any Ray Data work.

    cfg = plan_resources(cfg, ray.cluster_resources())   # fill in the "auto" (0) knobs
    check_resources(cfg, backend, ray.cluster_resources())  # ResourceError with the fix

Why check at all: Ray schedules an actor asking for `num_gpus=1` on a
GPU-less cluster by waiting for a GPU forever, and an actor pool that reserves
every CPU starves Ray Data's read task the same way (both seen on Ray 2.60,
docs/ARCHITECTURE.md, Ray pitfalls). The decision uses `ray.cluster_resources()` as it is when the
job starts: on an autoscaling cluster, start the GPU workers first (or set
min_workers), or the job fails fast rather than waiting for them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import replace

from sidrec.embed.backends import Backend
from sidrec.embed.config import EmbedConfig

__all__ = ["READ_TASK_CPUS", "ResourceError", "check_resources", "plan_resources"]

# Ray Data's read/render task reserves one CPU, which the actors must leave free.
READ_TASK_CPUS = 1.0


class ResourceError(RuntimeError):
    """The cluster (or this install) cannot run the requested embedding pipeline."""


def plan_resources(
    cfg: EmbedConfig, backend: Backend, resources: Mapping[str, float]
) -> EmbedConfig:
    """`cfg` with its auto knobs (num_actors, cpus_per_actor, threads_per_actor = 0) decided.

    vLLM: one engine per GPU. GPUs asked: as many actors as the GPUs hold, one
    CPU and one thread each.
    CPU only: one single-threaded actor per CPU, sharing the CPUs the read task
    leaves (on 2 cores: 2 actors x 0.5 CPU). Data parallelism beat one actor
    with every core's threads by 1.2-1.7x on 2 shared cores (docs/RESULTS.md),
    and each actor holds its own model copy, so for a multi-GB model on CPU set
    --num-actors. Values the user set are kept as they are.
    """
    cpus = float(resources.get("CPU", 0))
    gpus = float(resources.get("GPU", 0))
    actors, cpus_per_actor, threads = cfg.num_actors, cfg.cpus_per_actor, cfg.threads_per_actor
    if backend.build is None:  # an engine stage (vLLM) that places itself on GPUs
        actors = actors or max(1, int(gpus))
    elif cfg.num_gpus > 0:
        actors = actors or max(1, math.floor(gpus / cfg.num_gpus))
        cpus_per_actor = cpus_per_actor or 1.0
    else:
        spare = max(cpus - READ_TASK_CPUS, 0.0)
        if not actors:
            actors = max(1, math.floor(spare / cpus_per_actor) if cpus_per_actor else int(cpus))
        cpus_per_actor = cpus_per_actor or spare / actors
    if not threads:
        # A GPU actor needs one thread to feed its device; a CPU actor, its reserved cores.
        threads = 1 if cfg.num_gpus > 0 else max(1, round(cpus_per_actor))
    return replace(cfg, num_actors=actors, cpus_per_actor=cpus_per_actor, threads_per_actor=threads)


def check_resources(
    cfg: EmbedConfig,
    backend: Backend,
    resources: Mapping[str, float],
    module_available: Callable[[str], bool] | None = None,
) -> None:
    """Raise ResourceError listing every unmet need of a planned `cfg` on a cluster with `resources`."""
    available = module_available or (lambda name: importlib.util.find_spec(name) is not None)
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 0))
    actors = max(cfg.num_actors, 1)
    problems = []
    if backend.requires_module and not available(backend.requires_module):
        problems.append(
            f"backend {cfg.encoder.backend!r} needs the `{backend.requires_module}` package, which is "
            "not installed: on a GPU cluster `pip install -e '.[gpu]'` (CUDA wheels only); "
            "on CPU use --backend hf or sentence-transformers"
        )
    if backend.requires_gpu and gpus < actors:
        problems.append(
            f"backend {cfg.encoder.backend!r} needs one GPU per engine ({actors} asked) "
            f"but the Ray cluster has GPU={gpus:g}; on CPU use --backend hf or sentence-transformers"
        )
    if backend.build is not None:
        if cfg.num_gpus > 0 and gpus == 0:
            problems.append(
                f"num_gpus={cfg.num_gpus:g} per actor was asked but the Ray cluster has no GPU "
                "(Ray would wait for one forever): set --num-gpus 0, or add GPU workers"
            )
        elif cfg.num_gpus * actors > gpus:
            problems.append(
                f"{actors} actors x {cfg.num_gpus:g} GPUs > the cluster's {gpus:g} GPUs: "
                "lower --num-actors or --num-gpus"
            )
        needed = actors * cfg.cpus_per_actor + READ_TASK_CPUS
        if needed > cpus + 1e-9:
            problems.append(
                f"{actors} actors x {cfg.cpus_per_actor:g} CPUs + {READ_TASK_CPUS:g} for Ray "
                f"Data's read tasks = {needed:g} CPUs > the cluster's {cpus:g}: lower --num-actors "
                "or --cpus-per-actor (fractions are fine; --threads-per-actor sets torch threads)"
            )
    if problems:
        raise ResourceError("cannot run the embedding pipeline:\n  - " + "\n  - ".join(problems))
