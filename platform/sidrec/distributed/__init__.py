"""Ray glue, kept thin so every model and loss also runs without a cluster."""

from sidrec.distributed.ray_init import init_ray

__all__ = ["init_ray"]
