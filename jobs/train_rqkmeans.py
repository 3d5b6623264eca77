"""Fit the training-free RQ-KMeans tokenizer on a catalog's item embeddings and publish its SIDs.

    python jobs/train_rqkmeans.py --dataset beauty --data-dir /path/to/datasets
    python jobs/train_rqkmeans.py --dataset beauty --codebook-size 128 --set kmeans_iters=50
    ray job submit --working-dir . -- python jobs/train_rqkmeans.py --dataset beauty \
        --num-workers 1 --artifact-root /abs/path/artifacts/beauty

Residual k-means on the embeddings themselves, one level at a time (faiss
when installed, scikit-learn otherwise): the cheap baseline of GRID and
OpenOneRec. Same inputs, outputs and registry as jobs/train_rqvae.py; the
model is registered as `sidrec-tokenizer-rqkmeans-<dataset>`.

Features and their flags:
  config          `rqkmeans_default()` (sidrec.tokenizers.rqkmeans); --set FIELD=VALUE.
  --codebook-size/--levels   shortcuts for --set.
  --set fit_sample=R  rows each level's k-means is fitted on (default 262,144, a
                  seeded sample per level; all rows below it, so Beauty is unchanged);
                  every item is then assigned in row chunks. Larger fits better
                  centroids and costs K x R x d per Lloyd pass (docs/SCALE.md).
  --num-workers N 0 fits in this process. k-means is not data-parallel: with
                  N >= 1 it runs inside one Ray Train worker group where every
                  rank computes the same seeded fit, checkpointing each level,
                  so use 1 (the point is the checkpoint/resume, not speed).
"""

from __future__ import annotations

import argparse

from sidrec.cli import add_common_args, artifact_root, config_epilog, run_job
from sidrec.data import ensure_ingested
from sidrec.tokenizers import rqkmeans_default
from sidrec.tokenizers.pipeline import (
    TokenizeResult,
    add_tokenizer_args,
    config_from_args,
    request_from_args,
    run_tokenizer,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(rqkmeans_default(), "Config fields, rqkmeans_default()"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    add_tokenizer_args(parser)
    for flag in ("codebook-size", "levels"):
        parser.add_argument(f"--{flag}", type=int, default=None)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    shortcuts = {name: getattr(args, name) for name in ("codebook_size", "levels")}
    return config_from_args(rqkmeans_default(), args, shortcuts)


def main(args: argparse.Namespace) -> TokenizeResult:
    root = artifact_root(args)
    cfg = build_config(args)
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    result = run_tokenizer(cfg, request_from_args(args, root))
    m = result.metrics
    print(
        f"rqkmeans on {args.dataset}: {result.sids_path} | collision rate "
        f"{m['collision_rate']:.4f}, max items per SID {m['max_items_per_sid']}"
        + (" (up to date, skipped)" if result.skipped else "")
    )
    return result


if __name__ == "__main__":
    run_job(main, parse_args)
