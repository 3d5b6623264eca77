"""The tokenize stage end to end, shared by jobs/train_{rqvae,hidvae,rqkmeans}.py
and bench/tokenizer_quality.py:

    embeddings (+ tags) → fit(train loop, RunSpec) → sids/<run>.parquet
    + manifest + tokenizer files logged to MLflow and registered as
    `sidrec-tokenizer-<learner>-<dataset>`.

A re-run whose inputs (by content) and config match an existing SID table's
manifest does nothing; a re-run after a crash resumes from the last epoch's
checkpoint under <artifact_root>/train/<run>/ (the run name carries the
config hash, so a changed config starts afresh).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidrec import tracking
from sidrec.artifacts import file_record, library_versions, sha256_json, utc_now, write_json_atomic
from sidrec.cli import DEFAULT_ALIAS, DEFAULT_MAX_FAILURES, add_config_args, config_overrides
from sidrec.data import DataError, load_items
from sidrec.data.embeddings import load_embeddings
from sidrec.data.sids import SidTable, disambiguate, read_manifest_beside, write_sid_table
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.overrides import apply_overrides
from sidrec.reporting import MlflowReporter
from sidrec.tokenizers.hidvae import HiDVAEConfig
from sidrec.tokenizers.rqkmeans import RQKMeansConfig
from sidrec.tokenizers.rqvae import RQVAEConfig
from sidrec.tokenizers.tags import majority_tags
from sidrec.tokenizers.train import STATE_FILE, load_tags, rqkmeans_loop, train_loop

__all__ = [
    "TokenizeRequest",
    "TokenizeResult",
    "run_tokenizer",
    "find_embeddings",
    "apply_overrides",
    "config_from_args",
    "add_tokenizer_args",
    "request_from_args",
    "load_tokenizer",
    "registered_name",
]

log = logging.getLogger(__name__)

TokenizerConfig = RQVAEConfig | HiDVAEConfig | RQKMeansConfig
# A saved tokenizer names its learner; this is how it finds its config class again.
_CONFIG_CLASSES = {c.learner: c for c in (RQVAEConfig, HiDVAEConfig, RQKMeansConfig)}


@dataclass
class TokenizeRequest:
    """Where a tokenizer run reads and writes, and how it runs (not what it learns)."""

    dataset: str
    artifact_root: Path
    embeddings: Path | None = None  # None: the single file in <root>/embeddings/
    tags: Path | None = None  # None: the catalog's `categories` column
    run_name: str | None = None  # None: <learner>-<encoder>-<config hash>
    num_workers: int = 0  # 0 = this process; N = N Ray Train workers (DDP)
    use_gpu: bool = False
    max_failures: int = 1
    mlflow: bool = True
    alias: str | None = "candidate"  # registry alias for the new version ("latest" is reserved)
    force: bool = False  # redo even when an identical run's outputs exist


@dataclass
class TokenizeResult:
    sids_path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    skipped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def registered_name(learner: str, dataset: str) -> str:
    return f"sidrec-tokenizer-{learner}-{dataset}"


def find_embeddings(root: Path, explicit: Path | None) -> Path:
    """The embeddings file: `explicit`, else the only parquet in <root>/embeddings/."""
    if explicit is not None:
        return Path(explicit)
    folder = Path(root) / "embeddings"
    found = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not found:
        raise DataError(
            "no embeddings: run jobs/embed_catalog.py first, or pass --embeddings PATH",
            file=folder,
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(
            f"several embeddings ({names}): choose one with --embeddings PATH", file=folder
        )
    return found[0]


def config_from_args(base: Any, args: argparse.Namespace, shortcuts: dict[str, Any]) -> Any:
    """`base` with the job's shortcut flags (`--epochs`, ...; None = not given), then
    `--config FILE.yaml`, then `--set KEY=VALUE` applied: one syntax for every job."""
    given = {key: value for key, value in shortcuts.items() if value is not None}
    cfg = apply_overrides(base, given, source="--shortcut") if given else base
    return apply_overrides(cfg, config_overrides(args), source="--config/--set")


def add_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    """Flags every tokenizer job shares (after sidrec.cli.add_common_args)."""
    parser.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="item embeddings parquet (default: the one file in <root>/embeddings/)",
    )
    parser.add_argument(
        "--tags",
        type=Path,
        default=None,
        help="tags parquet (item_id, tags list<string>); default: catalog categories",
    )
    parser.add_argument("--run-name", default=None)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="0 = in this process; N >= 1 = N Ray Train workers with DDP",
    )
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES)
    add_config_args(parser, "the tokenizer config (every weight and margin is a field)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="registry alias for the new version")
    parser.add_argument("--force", action="store_true", help="redo even if up to date")


def request_from_args(args: argparse.Namespace, root: Path) -> TokenizeRequest:
    if args.num_workers < 0:
        raise SystemExit("--num-workers must be >= 0")
    return TokenizeRequest(
        dataset=args.dataset,
        artifact_root=root,
        embeddings=args.embeddings,
        tags=args.tags,
        run_name=args.run_name,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        mlflow=not args.no_mlflow,
        alias=args.alias,
        force=args.force,
    )


def up_to_date(
    sids_path: Path, fingerprint: str, request: TokenizeRequest
) -> TokenizeResult | None:
    """The published result when sids_path was built from these inputs and config
    (and --force was not given); None when the stage must run."""
    existing = read_manifest_beside(sids_path) if sids_path.is_file() else {}
    if existing.get("fingerprint") != fingerprint or request.force:
        return None
    log.info("tokenize: %s is up to date (fingerprint %s)", sids_path, fingerprint[:12])
    return TokenizeResult(sids_path, existing, existing.get("metrics", {}), skipped=True)


def train_spec(root: Path, run: str, fingerprint: str, request: TokenizeRequest) -> RunSpec:
    """Where and how the tokenizer trains. Checkpoints live under a name that carries
    the config hash, so a named run whose config changed never resumes old weights."""
    train_name = run if request.run_name is None else f"{run}-{fingerprint[:8]}"
    if request.force:
        shutil.rmtree(root / "train" / train_name, ignore_errors=True)
    return RunSpec(
        name=train_name,
        storage_path=str(root / "train"),
        num_workers=request.num_workers,
        use_gpu=request.use_gpu,
        max_failures=request.max_failures,
    )


def run_tokenizer(cfg: TokenizerConfig, request: TokenizeRequest) -> TokenizeResult:
    """Train (or fit) `cfg` on the catalog's embeddings and publish the SID table."""
    root = Path(request.artifact_root)
    # -- inputs, checked before any worker starts -------------------------
    num_items = load_items(root).num_rows
    embeddings = find_embeddings(root, request.embeddings)
    matrix = load_embeddings(embeddings, num_items=num_items)  # ids, dims, NaN
    cfg.validate(num_items)
    tag_file = Path(request.tags) if request.tags else root / "catalog" / "items.parquet"
    supervised = isinstance(cfg, HiDVAEConfig)
    tags = load_tags(
        tag_file, num_items, cfg.supervised_levels if supervised else cfg.levels, supervised
    )
    del matrix
    inputs = [file_record(embeddings), file_record(tag_file)]
    fingerprint = sha256_json(
        {"learner": cfg.learner, "config": asdict(cfg), "inputs": [r["sha256"] for r in inputs]}
    )
    encoder = embeddings.stem
    run = request.run_name or f"{cfg.learner}-{encoder}-{fingerprint[:8]}"
    sids_path = root / "sids" / f"{run}.parquet"
    done = up_to_date(sids_path, fingerprint, request)
    if done is not None:
        return done
    spec = train_spec(root, run, fingerprint, request)
    loop = rqkmeans_loop if isinstance(cfg, RQKMeansConfig) else train_loop
    loop_config: dict[str, Any] = {
        "tokenizer": cfg,
        "embeddings": str(embeddings.resolve()),
        "tags": str(tag_file.resolve()),
    }
    manifest: dict[str, Any] = {
        "stage": "tokenize",
        "learner": cfg.learner,
        "dataset": request.dataset,
        "run": run,
        "encoder": encoder,
        "config": asdict(cfg),
        "inputs": inputs,
        "fingerprint": fingerprint,
        "num_workers": request.num_workers,
        "use_gpu": request.use_gpu,
    }
    if not request.mlflow:
        outcome = fit(loop, loop_config, spec)
        return _publish(cfg, outcome, sids_path, manifest, tags, request, run_id=None)

    params = {
        "learner": cfg.learner,
        "encoder": encoder,
        "num_workers": request.num_workers,
        **asdict(cfg),
    }
    with tracking.start_run(root, request.dataset, run, params, {"stage": "tokenize"}) as active:
        run_id = active.info.run_id
        reporters = [MlflowReporter(tracking.tracking_uri(root), run_id)]
        outcome = fit(loop, loop_config, spec, reporters=reporters)
        return _publish(cfg, outcome, sids_path, manifest, tags, request, run_id=run_id)


def _publish(cfg, outcome, sids_path: Path, manifest, tags, request, run_id) -> TokenizeResult:
    state = load_state(outcome.checkpoint, STATE_FILE)
    if state is None:
        raise RuntimeError(f"run {manifest['run']} left no checkpoint")
    codes = np.asarray(state["codes"], dtype=np.int64)
    metrics = dict(state["metrics"])
    tag_text, _ = majority_tags(codes, tags) if tags is not None else (None, None)
    table = SidTable(
        codes=codes,
        disambig=disambiguate(codes),
        codebook_sizes=[cfg.codebook_size] * codes.shape[1],
        tags=tag_text,
    )
    manifest.update(
        metrics=metrics,
        disambiguation_levels=int(table.disambig.max() > 0),
        mlflow_run_id=run_id,
        created_at=utc_now(),
        versions=library_versions(),
    )
    write_sid_table(sids_path, table, manifest)
    if run_id is not None:
        manifest["registered_model"] = _log_and_register(
            cfg, state, sids_path, request, run_id, metrics
        )
        write_json_atomic(
            sids_path.with_name(f"{sids_path.stem}.manifest.json"),
            {**read_manifest_beside(sids_path), **manifest},
        )
    return TokenizeResult(sids_path, manifest, metrics, history=outcome.history)


def _log_and_register(cfg, state, sids_path: Path, request, run_id: str, metrics) -> dict[str, str]:
    """Final metrics, the tokenizer files and the SID table into the run; register them."""
    tracking.log_metrics({f"final/{k}": v for k, v in metrics.items()})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tokenizer"
        folder.mkdir()
        bundle = {k: v for k, v in state.items() if k != "optimizer"}
        torch.save(bundle, folder / "tokenizer.pt")
        (folder / "config.json").write_text(
            json.dumps({"learner": cfg.learner, "config": asdict(cfg)}, indent=2, default=str)
        )
        shutil.copy2(sids_path, folder / sids_path.name)
        side = sids_path.with_name(f"{sids_path.stem}.manifest.json")
        shutil.copy2(side, folder / side.name)
        tracking.log_artifacts(folder, "tokenizer")
    name = registered_name(cfg.learner, request.dataset)
    version = tracking.register_model(run_id, "tokenizer", name, alias=request.alias)
    return {"name": name, "version": version, "alias": request.alias or ""}


def load_tokenizer(folder: str | Path):
    """(config, model or centroids) from a logged `tokenizer/` folder (or its
    tokenizer.pt): an nn.Module in eval mode for RQ-VAE / HiD-VAE, the list of
    per-level centroids for RQ-KMeans (codes: `rqkmeans.rqkmeans_codes`)."""
    path = Path(folder)
    path = path / "tokenizer.pt" if path.is_dir() else path
    bundle = torch.load(path, map_location="cpu", weights_only=False)
    cls = _CONFIG_CLASSES[bundle["learner"]]
    values = dict(bundle["config"])
    if "hidden_dims" in values:
        values["hidden_dims"] = tuple(values["hidden_dims"])
    cfg = cls(**values)
    if isinstance(cfg, RQKMeansConfig):
        return cfg, list(bundle["centroids"])
    model = cfg.build(bundle["input_dim"], bundle["tag_sizes"])
    model.load_state_dict(bundle["model"])
    return cfg, model.eval()
