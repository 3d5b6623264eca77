"""Ray glue, kept thin so every model and loss also runs without a cluster."""

from sidrec.distributed.ray_init import init_ray
from sidrec.distributed.train import (
    LocalReporter,
    Reporter,
    RunContext,
    RunSpec,
    TrainOutcome,
    fit,
    load_state,
    unwrap,
)

__all__ = [
    "LocalReporter",
    "Reporter",
    "RunContext",
    "RunSpec",
    "TrainOutcome",
    "fit",
    "init_ray",
    "load_state",
    "unwrap",
]
