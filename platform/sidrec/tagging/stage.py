"""Stage 3, tags: catalog/items.parquet -> tags/<run>.parquet + <run>.manifest.json.

    result = ensure_tagged("artifacts/yelp", TagConfig(lm=hf_lm("/models/qwen")), pool, run="tags")
    tags = load_tags(result.path, num_items, levels=3, required=True)   # sidrec.tokenizers.train

The table has one row per tagged item, sorted by item_id: `item_id: int32`,
`tags: list<string>` (the chosen tag per level, coarse -> fine, possibly
shorter than --levels where a parent has no children) and `logprobs:
list<float64>` (the LM's log-likelihood of each chosen tag; 0 where the
candidate set had one tag). That is the shape `sidrec.tokenizers.tags.read_tag_paths`
reads (`item_id` + `tags`), so HiD-VAE takes it as is: `jobs/train_hidvae.py --tags FILE`.
Items left out (--limit) are untagged there, not wrong.

The manifest records the LM, encoder, pool, k, levels, template, input sha256s,
counts, throughput, the MLflow run id and, where the catalog has category
paths, the per-level agreement of the chosen tags with them (Beauty's paths
are ground truth). Idempotent like stage 2: same inputs and config -> nothing
to do; the parquet file is written under a temporary name and renamed, the
manifest last.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec import tracking
from sidrec.artifacts import (
    atomic_path,
    file_record,
    library_versions,
    published_manifest,
    sha256_json,
    utc_now,
    write_json_atomic,
)
from sidrec.data import DataError
from sidrec.embed.stage import check_catalog, model_record
from sidrec.embed.text import TextTemplate
from sidrec.tagging.pool import TagPool
from sidrec.tagging.tagger import TagConfig

__all__ = [
    "TAGS_VERSION",
    "TagResult",
    "agreement",
    "ensure_tagged",
    "tags_manifest_path",
    "tags_path",
]

log = logging.getLogger(__name__)

# Bump when the same inputs and config would choose different tags.
TAGS_VERSION = 1
ITEMS_FILE = Path("catalog") / "items.parquet"


@dataclass
class TagResult:
    path: Path  # tags/<run>.parquet
    manifest: dict[str, Any]
    skipped: bool  # True when an identical earlier run's output was kept


def tags_path(root: str | Path, run: str) -> Path:
    return Path(root) / "tags" / f"{run}.parquet"


def tags_manifest_path(root: str | Path, run: str) -> Path:
    return Path(root) / "tags" / f"{run}.manifest.json"


def _fingerprint(cfg: TagConfig, pool: TagPool, items_sha: str, lm: dict, limit: int) -> str:
    """Identity of a tagging run; execution knobs (actors, rows per call, GPUs) are not in it."""
    return sha256_json(
        {
            "version": TAGS_VERSION,
            "items": items_sha,
            "pool": sha256_json(pool.identity()),
            "lm": {**cfg.lm.identity(), "model": lm.get("sha256") or lm["source"]},
            "encoder": cfg.encoder.identity(),
            "levels": cfg.levels,
            "top_k": cfg.top_k,
            "template": cfg.template,
            "limit": limit,
        }
    )


def _existing(root: Path, run: str, key: str) -> dict[str, Any] | None:
    return published_manifest(tags_path(root, run), tags_manifest_path(root, run), key)


def agreement(chosen: list[list[str]], truth: list[list[str] | None], levels: int) -> list[float]:
    """Per level l: share of items with a true path of > l steps whose chosen path
    matches it on steps 0..l (a wrong parent makes every child wrong)."""
    out = []
    for level in range(levels):
        pairs = [(c, t) for c, t in zip(chosen, truth, strict=True) if t and len(t) > level]
        hits = sum(c[: level + 1] == t[: level + 1] for c, t in pairs)
        out.append(hits / len(pairs) if pairs else float("nan"))
    return out


def ensure_tagged(
    artifact_root: str | Path,
    cfg: TagConfig,
    pool: TagPool,
    dataset: str = "custom",
    run: str = "tags",
    limit: int = 0,
    track: bool = True,
    force: bool = False,
) -> TagResult:
    """Tag the catalog under `artifact_root` (its first `limit` items if > 0), unless an
    identical run already did. DataError for a missing catalog or template column,
    ResourceError (before any MLflow run) when the cluster cannot run `cfg`."""
    root = Path(artifact_root)
    items = root / ITEMS_FILE
    template = TextTemplate.parse(cfg.template)
    catalog = check_catalog(items, template)
    if pool.levels < cfg.levels:
        raise DataError(
            f"the tag pool has {pool.levels} levels, {cfg.levels} asked: lower --levels",
            file=pool.source or None,
        )
    items_rec = file_record(items)
    lm = model_record(cfg.lm.model)
    key = _fingerprint(cfg, pool, items_rec["sha256"], lm, limit)
    existing = None if force else _existing(root, run, key)
    if existing is not None:
        log.info("tags: %s is up to date (fingerprint %s)", tags_path(root, run), key[:12])
        return TagResult(tags_path(root, run), existing, skipped=True)

    from sidrec.tagging import ray_tags  # Ray only once there is work to do

    cfg, plan = ray_tags.plan_for_cluster(cfg)
    expected = catalog.item_ids if limit <= 0 else catalog.item_ids[catalog.item_ids < limit]
    manifest = {
        "stage": "tags",
        "dataset": dataset,
        "run": run,
        "fingerprint": key,
        "config": asdict(cfg),
        "lm": lm,
        "pool": {"source": pool.source, "tree": pool.tree, "sizes": pool.sizes[: cfg.levels]},
        "limit": limit,
        "inputs": {"items": items_rec},
        "execution": {
            "actors": plan.actors,
            "cpus_per_actor": plan.cpus_per_actor,
            "threads_per_actor": plan.threads,
            "num_gpus": cfg.num_gpus,
        },
    }
    params = {
        "run": run,
        "lm": cfg.lm.model,
        "backend": cfg.lm.backend,
        "levels": cfg.levels,
        "top_k": cfg.top_k,
        "template": cfg.template,
        "per_token": cfg.lm.per_token,
        "limit": limit,
        "fingerprint": key,
        **manifest["execution"],
    }
    context = (
        tracking.start_run(root, dataset, f"tags-{run}", params, {"stage": "tags"})
        if track
        else nullcontext()
    )
    with context as mlrun:
        out = ray_tags.run_pipeline(items, cfg, pool, plan, limit)
        table = _check_rows(out.table, expected, tags_path(root, run))
        truth = _catalog_paths(items, table.column("item_id").to_numpy())
        manifest["counts"] = {
            "items": table.num_rows,
            "per_level": [
                int(sum(len(p) > lv for p in table.column("tags").to_pylist()))
                for lv in range(cfg.levels)
            ],
        }
        if truth is not None:
            manifest["agreement_with_catalog"] = agreement(
                table.column("tags").to_pylist(), truth, cfg.levels
            )
        manifest["throughput"] = {"items_per_s": out.items_per_s, "seconds": out.seconds}
        manifest = _publish(root, run, table, manifest, mlrun.info.run_id if mlrun else None)
        if mlrun:
            import mlflow

            metrics = {
                "items_per_s": out.items_per_s,
                "seconds": out.seconds,
                "items": table.num_rows,
            }
            for level, value in enumerate(manifest.get("agreement_with_catalog", [])):
                metrics[f"agreement_level{level}"] = value
            tracking.log_metrics(metrics)
            mlflow.log_text(out.stats, "tags/ray_data_stats.txt")
            mlflow.log_artifact(str(tags_manifest_path(root, run)), artifact_path="tags")
    return TagResult(tags_path(root, run), manifest, skipped=False)


def _check_rows(table: pa.Table, expected: np.ndarray, dest: Path) -> pa.Table:
    """Sorted by item_id; exactly one row per expected item, whatever happened to the actors."""
    table = table.sort_by("item_id")
    ids = table.column("item_id").to_numpy()
    if len(ids) != len(expected) or not np.array_equal(ids, np.sort(expected)):
        raise RuntimeError(
            f"tagging pipeline returned {len(ids)} rows ({len(np.unique(ids))} distinct ids) "
            f"for {len(expected)} items; not writing {dest}"
        )
    return table


def _catalog_paths(items: Path, ids: np.ndarray) -> list[list[str] | None] | None:
    """The catalog's own category paths for `ids`, or None when it has none."""
    if "categories" not in pq.read_schema(items).names:
        return None
    table = pq.read_table(items, columns=["item_id", "categories"])
    by_id = dict(
        zip(
            table.column("item_id").to_pylist(),
            table.column("categories").to_pylist(),
            strict=False,
        )
    )
    paths = [by_id.get(int(i)) for i in ids]
    return paths if any(paths) else None


def _publish(root: Path, run: str, table: pa.Table, manifest: dict, run_id) -> dict[str, Any]:
    dest = tags_path(root, run)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)
    output = file_record(dest)
    output.pop("path")
    manifest = {
        **manifest,
        "created_at": utc_now(),
        "mlflow_run_id": run_id,
        "versions": library_versions(),
        "output": {"file": dest.name, **output},
    }
    write_json_atomic(tags_manifest_path(root, run), manifest)
    return manifest
