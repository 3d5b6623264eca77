"""The LAMIA tokenize stage end to end (docs/ARCHITECTURE.md stage 4, "item text for LAMIA"):

    catalog/items.parquet → fit(train_loop, RunSpec) → sids/<run>.parquet
    + manifest + the tokenizer (trainable weights, PCA, centroids) logged to
    MLflow and registered as `sidrec-tokenizer-lamia-<dataset>`.

It shares the RQ-VAE / HiD-VAE stage's request (`TokenizeRequest`: where, on
how many workers, which alias) and publishing (`_publish`: SID table with the
disambiguation index only where codes coincide, manifest, registry). A re-run
with the same catalog and config does nothing; after a crash it resumes from
the last epoch's checkpoint under <artifact_root>/train/<run>/.

    result = run_lamia(lamia_minilm_small(), TokenizeRequest(dataset="beauty", artifact_root=root))
    result.sids_path   # sids/lamia-<backbone>-<hash>.parquet
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sidrec import tracking
from sidrec.artifacts import file_record, sha256_json
from sidrec.data import load_items
from sidrec.distributed import fit
from sidrec.reporting import MlflowReporter
from sidrec.tokenizers.lamia.config import LamiaConfig
from sidrec.tokenizers.lamia.encoder import EncoderBackbone
from sidrec.tokenizers.lamia.tasks import item_attributes
from sidrec.tokenizers.lamia.train import train_loop
from sidrec.tokenizers.pipeline import (
    TokenizeRequest,
    TokenizeResult,
    _publish,
    train_spec,
    up_to_date,
)

__all__ = ["run_lamia", "backbone_name"]

log = logging.getLogger(__name__)


def backbone_name(cfg: LamiaConfig) -> str:
    """Short name of the backbone for run names: 'minilm' or the LM folder's name."""
    if isinstance(cfg.backbone, EncoderBackbone):
        return Path(cfg.backbone.model_path).name.lower() if cfg.backbone.model_path else "minilm"
    if cfg.backbone.random_config is not None:
        return f"random-{cfg.backbone.random_config.get('model_type', 'lm')}"
    return Path(cfg.backbone.model_path).name.lower() or "lm"


def run_lamia(cfg: LamiaConfig, request: TokenizeRequest) -> TokenizeResult:
    """Train the palette model on the catalog's text, quantize, publish the SID table."""
    root = Path(request.artifact_root)
    items_path = root / "catalog" / "items.parquet"
    items = load_items(root)  # checks the schema, names the file when missing
    cfg.validate(items.num_rows)
    item_attributes(items, cfg.task_fields)  # the task fields exist: fail before workers start
    del items
    inputs = [file_record(items_path)]
    fingerprint = sha256_json(
        {"learner": cfg.learner, "config": asdict(cfg), "inputs": [r["sha256"] for r in inputs]}
    )
    run = request.run_name or f"lamia-{backbone_name(cfg)}-{fingerprint[:8]}"
    sids_path = root / "sids" / f"{run}.parquet"
    done = up_to_date(sids_path, fingerprint, request)
    if done is not None:
        return done
    spec = train_spec(root, run, fingerprint, request)
    loop_config: dict[str, Any] = {"lamia": cfg, "items": str(items_path.resolve())}
    manifest: dict[str, Any] = {
        "stage": "tokenize",
        "learner": cfg.learner,
        "dataset": request.dataset,
        "run": run,
        "backbone": backbone_name(cfg),
        # Parallel codes (§4.2.4): no position is coarser than another.
        "code_order": "parallel",
        "config": asdict(cfg),
        "inputs": inputs,
        "fingerprint": fingerprint,
        "num_workers": request.num_workers,
        "use_gpu": request.use_gpu,
    }
    if not request.mlflow:
        outcome = fit(train_loop, loop_config, spec)
        return _publish(cfg, outcome, sids_path, manifest, None, request, run_id=None)
    params = {"learner": cfg.learner, "num_workers": request.num_workers, **asdict(cfg)}
    with tracking.start_run(root, request.dataset, run, params, {"stage": "tokenize"}) as active:
        run_id = active.info.run_id
        reporters = [MlflowReporter(tracking.tracking_uri(root), run_id)]
        outcome = fit(train_loop, loop_config, spec, reporters=reporters)
        return _publish(cfg, outcome, sids_path, manifest, None, request, run_id=run_id)
