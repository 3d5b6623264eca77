"""Train the HiD-VAE tokenizer (tag-supervised RQ-VAE + uniqueness loss) and publish its SIDs.

    python jobs/train_hidvae.py --dataset beauty --data-dir /path/to/datasets
    python jobs/train_hidvae.py --dataset beauty --num-workers 2 --epochs 50 --set lr=1e-3
    python jobs/train_hidvae.py --dataset beauty --set unique_weight=0   # the w/o-uniqueness ablation
    ray job submit --working-dir . -- python jobs/train_hidvae.py --dataset beauty \
        --num-workers 4 --use-gpu --artifact-root /abs/path/artifacts/beauty

Reads <artifact-root>/embeddings/<encoder>.parquet (or --embeddings) and the
item tags: the catalog's category paths (level l = categories[l]; items whose
path is shorter are masked out of that level's tag losses) or --tags FILE; writes sids/<run>.parquet + manifest,
checkpoints under train/<run>/, and, unless --no-mlflow, logs every epoch's
metrics and registers the tokenizer as `sidrec-tokenizer-hidvae-<dataset>`.

Features and their flags:
  --preset tuned  `hidvae_beauty_tuned()` (the default): the paper's losses
                  with colliding items batched together, β_unique 8 and a
                  cosine lr decay: 0.7% collisions on Beauty where the paper's
                  values leave 4.1% (docs/RESULTS_tokenizers.md).
  --preset paper  `hidvae_beauty()` (sidrec.tokenizers.hidvae): App. C.2 values
                  (L 3, K 256, τ 0.07, γ 2, m 0.9, β 0.25 / 1.0 / 2.0, AdamW 3e-4).
  --set FIELD=VALUE overrides any field of the preset (repeatable): every
                  loss weight and margin is one, e.g. --set unique_margin=0.8.
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
from sidrec.tokenizers import hidvae_beauty, hidvae_beauty_tuned
from sidrec.tokenizers.pipeline import (
    TokenizeResult,
    add_tokenizer_args,
    config_from_args,
    request_from_args,
    run_tokenizer,
)

PRESETS = {"paper": hidvae_beauty, "tuned": hidvae_beauty_tuned}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(PRESETS["tuned"](), "Config fields, --preset tuned"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    add_tokenizer_args(parser)
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="tuned",
        help="tuned: hidvae_beauty_tuned() (default); paper: hidvae_beauty(), App. C.2 as written",
    )
    for flag in ("epochs", "batch-size", "codebook-size", "levels"):
        parser.add_argument(f"--{flag}", type=int, default=None)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    shortcuts = {
        name: getattr(args, name) for name in ("epochs", "batch_size", "codebook_size", "levels")
    }
    return config_from_args(PRESETS[args.preset](), args, shortcuts)


def main(args: argparse.Namespace) -> TokenizeResult:
    root = artifact_root(args)
    cfg = build_config(args)
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    result = run_tokenizer(cfg, request_from_args(args, root))
    m = result.metrics
    print(
        f"hidvae on {args.dataset}: {result.sids_path} | collision rate {m['collision_rate']:.4f}, "
        f"max items per SID {m['max_items_per_sid']}, recon {m.get('recon_loss', float('nan')):.4f}, "
        f"tag accuracy {[round(m[k], 3) for k in sorted(m) if k.startswith('tag_acc/')]}"
        + (" (up to date, skipped)" if result.skipped else "")
    )
    return result


if __name__ == "__main__":
    run_job(main, parse_args)
