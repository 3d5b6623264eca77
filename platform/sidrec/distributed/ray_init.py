"""Start or join Ray the same way in jobs, tests and notebooks."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

# Small machines: a modest object store keeps the raylet from reserving a
# third of RAM, which matters on a 2-core CI box running other tests too.
SMALL_OBJECT_STORE_BYTES = 300 * 1024**2


def init_ray(
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    include_dashboard: bool = False,
    **kwargs,
):
    """Connect to `RAY_ADDRESS` when set (cluster / `ray job submit`), else start a
    local Ray sized for this machine. Calling it again is a no-op."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining the Ray cluster at %s", address)
        return ray.init(address=address, log_to_driver=True, **kwargs)
    cpus = num_cpus or os.cpu_count() or 1
    if object_store_memory is None and cpus <= 4:
        object_store_memory = SMALL_OBJECT_STORE_BYTES
    log.info("starting a local Ray with %d CPUs", cpus)
    return ray.init(
        # "local": a fresh embedded Ray, never an unrelated `ray start` cluster found on
        # this machine (plain ray.init() joins one, then rejects num_cpus).
        address="local",
        num_cpus=cpus,
        object_store_memory=object_store_memory,
        include_dashboard=include_dashboard,
        **kwargs,
    )
