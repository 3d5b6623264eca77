"""Evaluate a non-learned baseline (MostPopular, item-KNN) with the protocol of docs/ARCHITECTURE.md.

    python jobs/evaluate.py --dataset beauty --model mostpop --data-dir /path/to/datasets
    ray job submit --working-dir . -- python jobs/evaluate.py --dataset yelp --model itemknn

Ingests the dataset first if its artifacts are missing or stale, ranks the
full catalog for every test user (and valid, with --split valid), and reports
Recall/NDCG@{1,5,10,20} overall and by head/tail target popularity, both with
the whole catalog ranked (primary) and with seen items removed (labelled
`exclude_seen`). Metrics go to MLflow (experiment `sidrec-<dataset>`) and to
<artifact-root>/eval/<model>-<split>.json.

Config: `sidrec.models.popularity.BaselineConfig` (every field with its default
and meaning at the end of this help): `--config FILE.yaml`, then `--set
FIELD=VALUE` (repeatable); the flags are shortcuts for single fields.

Options and their trade-offs:
  --model mostpop|itemknn   mostpop is the floor every model must beat;
                            itemknn is a cheap non-neural neighbour model.
  --neighbours N            item-KNN neighbours kept per item (default 100).
  --batch-size B            users scored at once; B x catalog floats in memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from sidrec import tracking
from sidrec.artifacts import library_versions, utc_now, write_json_atomic
from sidrec.cli import (
    add_common_args,
    add_config_args,
    artifact_root,
    config_epilog,
    config_overrides,
    run_job,
)
from sidrec.data import (
    ensure_ingested,
    load_items,
    load_split,
    train_item_counts,
    train_sequences,
)
from sidrec.eval import head_items
from sidrec.eval.runner import evaluate_scorer, format_table
from sidrec.models.popularity import BaselineConfig, ItemKNN, MostPopular
from sidrec.overrides import apply_overrides

MODELS = ("mostpop", "itemknn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(BaselineConfig()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    add_config_args(parser, "the evaluation config (fields listed at the end)")
    parser.add_argument("--model", choices=MODELS, default=None, help="default mostpop")
    parser.add_argument("--split", choices=("valid", "test"), default=None, help="default test")
    parser.add_argument("--neighbours", type=int, default=None, help="default 100")
    parser.add_argument("--batch-size", type=int, default=None, help="default 1024")
    parser.add_argument("--no-mlflow", action="store_true")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> BaselineConfig:
    """BaselineConfig's defaults, the shortcut flags, then --config, then --set."""
    shortcuts = {k: getattr(args, k) for k in ("model", "split", "neighbours", "batch_size")}
    given = {k: v for k, v in shortcuts.items() if v is not None}
    cfg = apply_overrides(BaselineConfig(), given, source="--flag")
    return apply_overrides(cfg, config_overrides(args), source="--config/--set")


def build_model(cfg: BaselineConfig, root, num_items: int, counts):
    if cfg.model == "mostpop":
        return MostPopular(counts)
    return ItemKNN(train_sequences(root), num_items, cfg.item_knn())


def main(args: argparse.Namespace) -> dict[str, float]:
    cfg = build_config(args)
    args.model, args.split = cfg.model, cfg.split  # the record and run names below
    root = artifact_root(args)
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    num_items = load_items(root).num_rows
    counts = train_item_counts(root, num_items)
    split = load_split(root, args.split)

    start = time.perf_counter()
    model = build_model(cfg, root, num_items, counts)
    fit_s = time.perf_counter() - start
    head = head_items(torch.as_tensor(counts))
    metrics = evaluate_scorer(
        model.score, split, num_items, head_mask=head, batch_size=cfg.batch_size
    )
    eval_s = time.perf_counter() - start - fit_s

    print(f"{args.model} on {args.dataset} ({args.split}, {len(split)} users, {num_items} items)")
    print(
        format_table(
            {"full catalog": metrics, "exclude_seen": _unprefixed(metrics, "exclude_seen/")}
        )
    )
    print(
        format_table({"head": _unprefixed(metrics, "head/"), "tail": _unprefixed(metrics, "tail/")})
    )
    record = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "config": dataclasses.asdict(cfg),
        "metrics": metrics,
        "fit_seconds": fit_s,
        "eval_seconds": eval_s,
        "created_at": utc_now(),
        "versions": library_versions(),
    }
    if not args.no_mlflow:
        params = dataclasses.asdict(cfg)
        with tracking.start_run(
            root, args.dataset, f"{args.model}-{args.split}", params, {"stage": "evaluate"}
        ) as run:
            tracking.log_metrics({f"{args.split}/{k}": v for k, v in metrics.items()})
            record["mlflow_run_id"] = run.info.run_id
    write_json_atomic(root / "eval" / f"{args.model}-{args.split}.json", record)
    return metrics


def _unprefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


if __name__ == "__main__":
    run_job(main, parse_args)
