"""The Ray Data pipeline, kept thin: items.parquet -> text -> encoder actors -> vectors.

    read_parquet(items)                                   one task per file / row group
      .map_batches(_render)                               template -> `text` (fused with the read)
      .repartition(target_num_rows_per_block=R)           R rows per actor call
      .map_batches(EncoderActor, compute=ActorPoolStrategy(size=N),
                   batch_size=R, num_cpus=C, num_gpus=G)  one model per actor
or, for vLLM, ray.data.llm's processor (task_type="embed") in place of the actor pool.

`stream_to_parquet` (the embed stage, bench/scale.py) writes each batch as it
arrives, then copies the row groups into id order: driver memory stays about
one output row group whatever N is (docs/SCALE.md). `run_pipeline` gathers
(item_id, embedding) on the driver instead: N x d x 4 bytes (10M x 384:
15 GiB), for benchmarks and small catalogs. A crashed actor is restarted by Ray and
its unfinished batch retried (Ray Data's actor pool defaults: max_restarts=-1,
max_task_retries=-1); a batch's output only counts once its task finished, so
nothing is duplicated or dropped (tests/sidrec/embed/test_ray_embed.py kills
an actor mid-run to check).

On a multi-node cluster the items path must be readable from every node
(shared filesystem or an s3:// / gs:// artifact root).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from sidrec.artifacts import atomic_path
from sidrec.distributed import init_ray
from sidrec.embed.backends import build_encoder, get_backend
from sidrec.embed.config import EmbedConfig, EncoderConfig
from sidrec.embed.resources import check_resources, plan_resources
from sidrec.embed.text import TextTemplate

__all__ = [
    "EncoderActor",
    "PipelineOutput",
    "build_dataset",
    "plan_for_cluster",
    "run_pipeline",
    "StreamResult",
    "stream_to_parquet",
]

log = logging.getLogger(__name__)


class EncoderActor:
    """One encoder per actor, built once; each call embeds one batch of rendered texts."""

    def __init__(self, encoder: EncoderConfig, threads: int):
        import torch

        # Ray sets OMP_NUM_THREADS to the actor's reserved CPUs (1 by default);
        # torch threads are set explicitly so a 2-core box can give one actor both.
        torch.set_num_threads(threads)
        self.encoder = build_encoder(encoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # batch: item_id [R], text [R] -> item_id [R] int32, embedding [R x d] float32
        vectors = self.encoder.encode(batch["text"].tolist())
        return {"item_id": batch["item_id"].astype(np.int32), "embedding": vectors}


def _render(batch: pa.Table, template: str) -> pa.Table:
    texts = TextTemplate.parse(template).render(batch)
    return pa.table(
        {"item_id": batch.column("item_id").cast(pa.int32()), "text": pa.array(texts, pa.string())}
    )


def build_dataset(
    items_path: str | Path, cfg: EmbedConfig, actor_cls: type = EncoderActor
) -> ray.data.Dataset:
    """The lazy Dataset of rows {item_id: int32, embedding: [d] float32}, in no particular order.

    `cfg` as planned by `plan_for_cluster` (no auto knobs left).

    `actor_cls` is the class the pool instantiates (tests pass one that crashes once).
    """
    template = TextTemplate.parse(cfg.template)
    ds = ray.data.read_parquet(str(items_path), columns=["item_id", *template.columns])
    ds = ds.map_batches(_render, batch_format="pyarrow", fn_kwargs={"template": cfg.template})
    # A catalog file is often one block; cutting it into R-row blocks is what
    # lets N actors share it (streaming, no shuffle).
    ds = ds.repartition(target_num_rows_per_block=cfg.rows_per_call)
    if get_backend(cfg.encoder.backend).build is None:
        return _vllm_stage(ds, cfg)
    return ds.map_batches(
        actor_cls,
        compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
        batch_size=cfg.rows_per_call,
        batch_format="numpy",
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.num_gpus,
        fn_constructor_kwargs={"encoder": cfg.for_workers(), "threads": cfg.threads_per_actor},
    )


def _vllm_stage(ds: ray.data.Dataset, cfg: EmbedConfig) -> ray.data.Dataset:
    """vLLM's pooling runner (task_type="embed"), one engine per GPU, `num_actors` engines."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    enc = cfg.encoder
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=enc.model,
            task_type="embed",
            batch_size=cfg.rows_per_call,
            concurrency=cfg.num_actors,
            engine_kwargs={"dtype": enc.dtype, "max_model_len": enc.max_length},
            # Plain item text: no chat template; the engine tokenizes; nothing to detokenize.
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
        ),
        preprocess=lambda row: {"prompt": row["text"]},
        postprocess=lambda row: {
            "item_id": np.int32(row["item_id"]),
            "embedding": np.asarray(row["embeddings"], dtype=np.float32),
        },
    )
    return processor(ds)


@dataclass
class PipelineOutput:
    item_ids: np.ndarray  # [n] int32, in arrival order
    embeddings: np.ndarray  # [n x d] float32, row i is item_ids[i]
    seconds: float  # wall time from the start of execution to the last row on the driver
    stats: str  # Ray Data's per-operator timings (ds.stats())

    @property
    def items_per_s(self) -> float:
        return len(self.item_ids) / self.seconds if self.seconds > 0 else float("nan")


def plan_for_cluster(cfg: EmbedConfig) -> EmbedConfig:
    """Join (or start) Ray, size the auto knobs of `cfg` from it, and raise
    ResourceError if it cannot run the result (never hang)."""
    init_ray()
    backend = get_backend(cfg.encoder.backend)
    resources = ray.cluster_resources()
    planned = plan_resources(cfg, backend, resources)
    check_resources(planned, backend, resources)
    return planned


def run_pipeline(
    items_path: str | Path, cfg: EmbedConfig, actor_cls: type = EncoderActor
) -> PipelineOutput:
    """Plan and check `cfg` against the cluster, run the pipeline, gather the rows on the driver."""
    cfg = plan_for_cluster(cfg)
    ds = build_dataset(items_path, cfg, actor_cls)
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    start = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids.append(np.asarray(batch["item_id"], dtype=np.int32))
        vectors.append(np.asarray(batch["embedding"], dtype=np.float32))
    seconds = time.perf_counter() - start
    if not ids:
        return PipelineOutput(
            np.zeros(0, np.int32), np.zeros((0, 0), np.float32), seconds, ds.stats()
        )
    out = PipelineOutput(np.concatenate(ids), np.concatenate(vectors), seconds, ds.stats())
    log.info(
        "embedded %d items in %.1f s (%.1f items/s)", len(out.item_ids), seconds, out.items_per_s
    )
    return out


class StreamResult(NamedTuple):
    seconds: float  # from the start of execution to the last row written
    first_batch_seconds: float  # ... to the first row: pool start-up, model loads
    rows_after_first: int  # rows that arrived after the first batch (steady-state rate)
    stats: str  # Ray Data's per-operator timings

    @property
    def steady_rows_per_s(self) -> float:
        busy = self.seconds - self.first_batch_seconds
        return self.rows_after_first / busy if busy > 0 else float("nan")


def stream_to_parquet(
    items_path: str | Path,
    cfg: EmbedConfig,
    out_path: str | Path,
    num_items: int,
    actor_cls: type = EncoderActor,
) -> StreamResult:
    """Run the pipeline and write its rows, sorted by item id, to out_path, batch by batch.

    The layout of embeddings/<tag>.parquet (item_id int32, embedding
    fixed_size_list<float32>[d], sorted by item_id); the catalog's item ids must be
    0..num_items-1 in file order, as ingest writes them. Batches arrive in any
    order (Ray Data's preserve_order still let a 1M-row file's 12th row group
    come first) and may join pieces of several blocks: each run of consecutive
    ids is spilled as one row group beside out_path, then the row groups are
    copied into out_path in id order.
    Memory: one batch, then one output row group (<= ROW_GROUP_BYTES) on the
    driver, never [N x d]; disk: the output twice, briefly. Raises, writing
    nothing at out_path, if a row is missing or repeated or a value is not finite.
    `actor_cls` is the class the pool instantiates (tests pass one that crashes once).
    """
    cfg = plan_for_cluster(cfg)
    ds = build_dataset(items_path, cfg, actor_cls)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spill = out_path.with_name(f".{out_path.name}.spill")
    start, first, ranges = time.perf_counter(), None, []
    writer = None
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ids = np.asarray(batch["item_id"], dtype=np.int32)
            if not len(ids):
                continue
            vectors = np.asarray(batch["embedding"], dtype=np.float32)
            if not np.isfinite(vectors).all():
                raise RuntimeError(
                    f"the encoder produced non-finite values; not writing {out_path}"
                )
            # A batch may join the tail of one block to another: split it into runs
            # of consecutive ids, one row group each.
            cuts = np.flatnonzero(np.diff(ids) != 1) + 1
            for run_ids, run in zip(np.split(ids, cuts), np.split(vectors, cuts), strict=True):
                table = pa.table(
                    {
                        "item_id": pa.array(run_ids),
                        "embedding": pa.FixedSizeListArray.from_arrays(
                            pa.array(run.reshape(-1)), run.shape[1]
                        ),
                    }
                )
                writer = writer or pq.ParquetWriter(spill, table.schema)
                writer.write_table(table, row_group_size=len(run_ids))  # one row group
                ranges.append((int(run_ids[0]), len(run_ids)))
            first = first or (time.perf_counter() - start, len(ids))
        if writer is not None:
            writer.close()
        order = sorted(range(len(ranges)), key=lambda g: ranges[g][0])
        expected = 0
        for g in order:
            if ranges[g][0] != expected:
                raise RuntimeError(
                    f"{items_path}: embedded rows are missing or repeated at item {expected}"
                )
            expected += ranges[g][1]
        if expected != num_items:
            raise RuntimeError(f"{items_path}: embedded {expected} rows, expected {num_items}")
        with atomic_path(out_path) as tmp:
            _copy_in_order(pq.ParquetFile(spill), order, tmp)
    finally:
        spill.unlink(missing_ok=True)
    first = first or (0.0, 0)
    return StreamResult(time.perf_counter() - start, first[0], num_items - first[1], ds.stats())


# Rows of the output file are joined into row groups of about this size: few enough
# groups for readers (not one per actor call), bounded driver memory while copying.
ROW_GROUP_BYTES = 64 << 20


def _copy_in_order(spilled: pq.ParquetFile, order: list[int], dest: Path) -> None:
    """Copy the spilled row groups into dest in `order`, joined up to ROW_GROUP_BYTES."""
    pending: list[pa.Table] = []
    size = 0
    with pq.ParquetWriter(dest, spilled.schema_arrow) as writer:
        for g in order:
            table = spilled.read_row_group(g)
            pending.append(table)
            size += table.nbytes
            if size >= ROW_GROUP_BYTES:
                joined = pa.concat_tables(pending)
                writer.write_table(joined, row_group_size=joined.num_rows)
                pending, size = [], 0
        if pending:
            joined = pa.concat_tables(pending)
            writer.write_table(joined, row_group_size=joined.num_rows)
