"""The Ray Data pipeline, kept thin: items.parquet -> text -> Tagger actors -> tag paths.

    read_parquet(items)                                    one task per file / row group
      .map_batches(_render)                                template -> text, --limit (fused with the read)
      .repartition(target_num_rows_per_block=R)            R rows per actor call
      .map_batches(TaggerActor, compute=ActorPoolStrategy(size=N),
                   batch_size=R, num_cpus=C, num_gpus=G)   one encoder + LM per actor

Rows come back as {item_id: int32, tags: list<string>, logprobs: list<float64>}
in no particular order; the driver gathers and sorts them (sidrec.tagging.stage).
The pool is sized before any Ray Data work (plan_pool), and refused when it
cannot run: an actor pool reserving every CPU starves the read task and hangs,
as does `num_gpus` on a cluster with no GPU (docs/ARCHITECTURE.md, Ray pitfalls).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from sidrec.distributed import init_ray
from sidrec.embed.resources import READ_TASK_CPUS, ResourceError
from sidrec.embed.text import TextTemplate
from sidrec.tagging.pool import TagPool
from sidrec.tagging.scorer import get_lm_backend
from sidrec.tagging.tagger import TagConfig, Tagger

__all__ = ["OUTPUT_SCHEMA", "TaggerActor", "build_dataset", "plan_pool", "run_pipeline"]

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = pa.schema(
    [
        ("item_id", pa.int32()),
        ("tags", pa.list_(pa.string())),
        ("logprobs", pa.list_(pa.float64())),
    ]
)


class TaggerActor:
    """One Tagger (encoder + tag vectors + LM) per actor, built once."""

    def __init__(self, cfg: TagConfig, pool: TagPool, threads: int):
        import torch

        # Ray sets OMP_NUM_THREADS to the reserved CPUs (1 by default); set torch's explicitly.
        torch.set_num_threads(threads)
        self.tagger = Tagger(cfg, pool)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        # batch: item_id [R], text [R] -> a table of R rows (OUTPUT_SCHEMA)
        paths, logps = self.tagger.tag(batch["text"].tolist())
        return pa.table(
            {
                "item_id": pa.array(batch["item_id"].astype(np.int32)),
                "tags": pa.array(paths, pa.list_(pa.string())),
                "logprobs": pa.array(logps, pa.list_(pa.float64())),
            },
            schema=OUTPUT_SCHEMA,
        )


def _render(batch: pa.Table, template: str, limit: int) -> pa.Table:
    ids = batch.column("item_id").cast(pa.int32())
    if limit > 0:  # item ids are dense 0..N-1: the first N items are those below N
        keep = pc.less(ids, limit)
        batch, ids = batch.filter(keep), ids.filter(keep)
    texts = TextTemplate.parse(template).render(batch)
    return pa.table({"item_id": ids, "text": pa.array(texts, pa.string())})


@dataclass(frozen=True)
class PoolPlan:
    actors: int
    cpus_per_actor: float
    threads: int


def plan_pool(cfg: TagConfig, resources: Mapping[str, float], available=None) -> PoolPlan:
    """Size the actor pool from the cluster's resources; ResourceError listing every unmet need.

    GPUs asked: one actor per `num_gpus` GPUs, one CPU each. CPU only: the CPUs
    left after Ray Data's read task, shared by the actors (default one per
    spare CPU; each holds an LM copy, so set --concurrency for a large LM).
    """
    has = available or (lambda name: importlib.util.find_spec(name) is not None)
    backend = get_lm_backend(cfg.lm.backend)
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    problems = []
    if backend.requires_module and not has(backend.requires_module):
        problems.append(
            f"--backend {cfg.lm.backend} needs the `{backend.requires_module}` package, which is "
            "not installed: on a GPU cluster `pip install -e '.[gpu]'`; on CPU use --backend hf"
        )
    if backend.requires_gpu and cfg.num_gpus <= 0:
        problems.append(f"--backend {cfg.lm.backend} runs on GPUs only: set --num-gpus 1")
    if cfg.num_gpus > 0:
        actors = cfg.num_actors or max(1, math.floor(gpus / cfg.num_gpus))
        cpus_per_actor = cfg.cpus_per_actor or 1.0
        if gpus == 0:
            problems.append(
                f"num_gpus={cfg.num_gpus:g} per actor was asked but the Ray cluster has no GPU "
                "(Ray would wait for one forever): set --num-gpus 0, or add GPU workers"
            )
        elif actors * cfg.num_gpus > gpus:
            problems.append(
                f"{actors} actors x {cfg.num_gpus:g} GPUs > the cluster's {gpus:g} GPUs: "
                "lower --concurrency"
            )
    else:
        spare = max(cpus - READ_TASK_CPUS, 0.0)
        actors = cfg.num_actors or max(1, math.floor(spare))
        cpus_per_actor = cfg.cpus_per_actor or (spare / actors if spare else 1.0)
    needed = actors * cpus_per_actor + READ_TASK_CPUS
    if needed > cpus + 1e-9:
        problems.append(
            f"{actors} actors x {cpus_per_actor:g} CPUs + {READ_TASK_CPUS:g} for Ray Data's read "
            f"= {needed:g} CPUs > the cluster's {cpus:g}: lower --concurrency (fractions of a "
            "CPU per actor are fine)"
        )
    if problems:
        raise ResourceError("cannot run the tagging pipeline:\n  - " + "\n  - ".join(problems))
    threads = 1 if cfg.num_gpus > 0 else max(1, round(cpus_per_actor))
    return PoolPlan(actors, cpus_per_actor, threads)


def plan_for_cluster(cfg: TagConfig) -> tuple[TagConfig, PoolPlan]:
    """Join (or start) Ray and plan the pool on it (ResourceError: nothing started)."""
    init_ray()
    plan = plan_pool(cfg, ray.cluster_resources())
    return replace(cfg, num_actors=plan.actors, cpus_per_actor=plan.cpus_per_actor), plan


def build_dataset(
    items_path: str | Path, cfg: TagConfig, pool: TagPool, plan: PoolPlan, limit: int = 0
) -> ray.data.Dataset:
    """The lazy Dataset of OUTPUT_SCHEMA rows, one per item (the first `limit` with limit > 0)."""
    template = TextTemplate.parse(cfg.template)
    columns = list(dict.fromkeys(["item_id", *template.columns]))
    ds = ray.data.read_parquet(str(items_path), columns=columns)
    ds = ds.map_batches(
        _render, batch_format="pyarrow", fn_kwargs={"template": cfg.template, "limit": limit}
    )
    # A catalog file is often one block; R-row blocks let N actors share it.
    ds = ds.repartition(target_num_rows_per_block=cfg.rows_per_call)
    return ds.map_batches(
        TaggerActor,
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        batch_size=cfg.rows_per_call,
        batch_format="numpy",
        num_cpus=plan.cpus_per_actor,
        num_gpus=cfg.num_gpus,
        fn_constructor_kwargs={"cfg": cfg.for_workers(), "pool": pool, "threads": plan.threads},
    )


@dataclass
class PipelineOutput:
    table: pa.Table  # OUTPUT_SCHEMA, in arrival order
    seconds: float  # wall time from the start of execution to the last row on the driver
    stats: str  # Ray Data's per-operator timings

    @property
    def items_per_s(self) -> float:
        return self.table.num_rows / self.seconds if self.seconds > 0 else float("nan")


def run_pipeline(
    items_path: str | Path, cfg: TagConfig, pool: TagPool, plan: PoolPlan, limit: int = 0
) -> PipelineOutput:
    """Run the pipeline on the current Ray (plan with plan_for_cluster) and gather its rows."""
    ds = build_dataset(items_path, cfg, pool, plan, limit)
    start = time.perf_counter()
    parts = [
        pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
        for b in ds.iter_batches(batch_size=None, batch_format="pyarrow")
    ]
    seconds = time.perf_counter() - start
    table = (
        pa.concat_tables([p.cast(OUTPUT_SCHEMA) for p in parts])
        if parts
        else (OUTPUT_SCHEMA.empty_table())
    )
    log.info("tagged %d items in %.1f s", table.num_rows, seconds)
    return PipelineOutput(table, seconds, ds.stats())
