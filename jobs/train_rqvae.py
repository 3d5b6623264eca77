"""Train the TIGER RQ-VAE tokenizer on a catalog's item embeddings and publish its SIDs.

    python jobs/train_rqvae.py --dataset beauty --data-dir /path/to/datasets
    python jobs/train_rqvae.py --dataset beauty --num-workers 2 --epochs 50 --set lr=1e-3
    ray job submit --working-dir . -- python jobs/train_rqvae.py --dataset beauty \
        --num-workers 4 --use-gpu --artifact-root /abs/path/artifacts/beauty

Reads <artifact-root>/embeddings/<encoder>.parquet (or --embeddings) and the
catalog (ingested first if missing); writes sids/<run>.parquet + manifest,
checkpoints under train/<run>/, and, unless --no-mlflow, logs every epoch's
metrics and registers the tokenizer as `sidrec-tokenizer-rqvae-<dataset>`.

Features and their flags:
  config          `rqvae_tiger()` (sidrec.tokenizers.rqvae): TIGER §4.1 sizes;
                  --set FIELD=VALUE overrides any field (repeatable).
  --epochs/--batch-size/--codebook-size/--levels   shortcuts for --set.
  --num-workers N 0 trains in this process (fastest on one CPU box); N >= 1
                  runs N Ray Train workers with DDP, a checkpoint per epoch and
                  a restart from it when a worker dies (--max-failures).
  --use-gpu       one GPU per worker (fails fast when Ray has none).
  re-runs         same inputs + config: nothing to do; after a crash: resumes.
"""

from __future__ import annotations

import argparse

from sidrec.cli import add_common_args, artifact_root, config_epilog, run_job
from sidrec.data import ensure_ingested
from sidrec.tokenizers import rqvae_tiger
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
        epilog=config_epilog(rqvae_tiger(), "Config fields, rqvae_tiger()"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    add_tokenizer_args(parser)
    for flag in ("epochs", "batch-size", "codebook-size", "levels"):
        parser.add_argument(f"--{flag}", type=int, default=None)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    shortcuts = {
        name: getattr(args, name) for name in ("epochs", "batch_size", "codebook_size", "levels")
    }
    return config_from_args(rqvae_tiger(), args, shortcuts)


def main(args: argparse.Namespace) -> TokenizeResult:
    root = artifact_root(args)
    cfg = build_config(args)
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    result = run_tokenizer(cfg, request_from_args(args, root))
    m = result.metrics
    print(
        f"rqvae on {args.dataset}: {result.sids_path} | collision rate {m['collision_rate']:.4f}, "
        f"max items per SID {m['max_items_per_sid']}, recon {m.get('recon_loss', float('nan')):.4f}"
        + (" (up to date, skipped)" if result.skipped else "")
    )
    return result


if __name__ == "__main__":
    run_job(main, parse_args)
