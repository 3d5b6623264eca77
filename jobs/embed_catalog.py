"""Stage 2, embed: every catalog item -> one vector, with a Ray Data actor pool of encoders.

    python jobs/embed_catalog.py --dataset beauty --data-dir /path/to/datasets
    ray job submit --working-dir . -- python jobs/embed_catalog.py --dataset beauty --data-dir /data --artifact-root /shared/artifacts/beauty

Ingests the dataset first if its catalog is missing or stale (a catalog already
under the artifact root, yours from `jobs/ingest.py --custom` included, is
used as it is; --no-ingest skips even that check), renders each item's text from a template, embeds it and writes
<artifact-root>/embeddings/<tag>.parquet (item_id int32, embedding
fixed_size_list<float32>[d], sorted by item_id) and <tag>.manifest.json beside
it (encoder, dim, pooling, template, normalization, input sha256s, counts,
MLflow run id, items/s). Re-running with the same inputs and config does
nothing. Under `ray job submit` give absolute paths.

Options and their trade-offs:
  --backend B          sentence-transformers (default: the packaged all-MiniLM-L6-v2,
                       offline, 384-d), hf (any transformers AutoModel: an encoder
                       or a decoder-only LLM, LAMIA-style), vllm (ray.data.llm,
                       GPU clusters with the `gpu` extra; fails fast elsewhere).
  --model PATH         local folder or hub id (required for hf and vllm).
  --pooling P          hf: mean (encoders), last (decoder-only LLMs), cls.
  --dtype D            float32 | bfloat16 | float16; bf16 on GPUs, float32 on CPU.
  --max-length N       tokens kept per text; cost grows with it.
  --template T         Python format string over item columns, default "{text}"
                       (ingest's per-dataset rendering); e.g. "{title}. {brand}.
                       {categories}". Blank renders fall back to the title (counted).
  --batch-size B       texts per forward pass (64 on CPU; 256-1024 on a GPU).
  --rows-per-call R    rows per actor call, sorted by length inside: larger pads
                       less but holds more in memory per actor.
  --num-actors N       encoder replicas, each with its own model copy. Default:
                       one per GPU with --num-gpus, else one single-threaded
                       actor per CPU (fastest on 2 shared cores, docs/RESULTS.md);
                       set it for multi-GB models on CPU.
  --cpus-per-actor C   CPUs Ray reserves per actor (fractions allowed). Default:
                       the CPUs left after one for Ray Data's read task, shared.
  --threads-per-actor T  torch threads per actor (default: C, rounded, >= 1).
  --num-gpus G         GPUs per actor; fails fast on a cluster without GPUs.
  --tag NAME           output file name (default from the model and pooling).
  --force              re-embed even when an identical output exists.
"""

from __future__ import annotations

import argparse
import inspect
import json

import ray

from sidrec.cli import (
    add_common_args,
    add_config_args,
    artifact_root,
    config_epilog,
    config_overrides,
    run_job,
)
from sidrec.data import ensure_ingested
from sidrec.embed import (
    BACKENDS,
    DTYPES,
    POOLINGS,
    EmbedConfig,
    EncoderConfig,
    ResourceError,
    ensure_embedded,
    get_backend,
)
from sidrec.overrides import apply_overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(EmbedConfig(), "Config fields, the defaults"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sentence-transformers")
    parser.add_argument(
        "--model", default=None, help="local folder or hub id (default: packaged MiniLM)"
    )
    parser.add_argument("--pooling", choices=POOLINGS, default=None)
    parser.add_argument("--dtype", choices=DTYPES, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--template", default="{text}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rows-per-call", type=int, default=1024)
    parser.add_argument("--num-actors", type=int, default=0, help="0 = from the cluster")
    parser.add_argument("--cpus-per-actor", type=float, default=0.0, help="0 = from the cluster")
    parser.add_argument("--threads-per-actor", type=int, default=0, help="0 = the reserved CPUs")
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--tag", default="")
    parser.add_argument(
        "--no-ingest", action="store_true", help="embed the catalog already in the artifact root"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    parser.add_argument(
        "--no-progress", action="store_true", help="turn Ray Data's progress bars off"
    )
    parser.add_argument("--force", action="store_true")
    add_config_args(parser, "the EmbedConfig (encoder.FIELD for the encoder)")
    return parser.parse_args(argv)


def encoder_config(args: argparse.Namespace) -> EncoderConfig:
    """The --backend's config builder (sidrec.embed.BACKENDS), fed only the flags that were set."""
    builder = get_backend(args.backend).config
    accepted = inspect.signature(builder).parameters
    flags = {
        "model": args.model,
        "pooling": args.pooling,
        "dtype": args.dtype,
        "max_length": args.max_length,
    }
    kwargs = {"batch_size": args.batch_size}
    for name, value in flags.items():
        if value is None:
            continue
        if name not in accepted:
            raise ValueError(
                f"--{name.replace('_', '-')} does not apply to --backend {args.backend}"
            )
        kwargs[name] = value
    if accepted["model"].default is inspect.Parameter.empty and "model" not in kwargs:
        raise ValueError(f"--backend {args.backend} needs --model (a local folder or hub id)")
    return builder(**kwargs)


def main(args: argparse.Namespace) -> dict:
    # Validate and build the whole config before any data or Ray work.
    try:
        cfg = EmbedConfig(
            encoder=encoder_config(args),
            template=args.template,
            tag=args.tag,
            rows_per_call=args.rows_per_call,
            num_actors=args.num_actors,
            cpus_per_actor=args.cpus_per_actor,
            threads_per_actor=args.threads_per_actor,
            num_gpus=args.num_gpus,
        )
        cfg = apply_overrides(cfg, config_overrides(args), source="--config/--set")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    root = artifact_root(args)
    if not args.no_ingest:
        ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    if args.no_progress:
        ray.data.DataContext.get_current().enable_progress_bars = False
    result = ensure_embedded(
        root, cfg, dataset=args.dataset, track=not args.no_mlflow, force=args.force
    )
    manifest = result.manifest
    state = "unchanged" if result.skipped else "written"
    print(
        f"embed {state}: {result.path} ({manifest['counts']['items']} items x {manifest['dim']} dims)"
    )
    print(
        json.dumps({"counts": manifest["counts"], "throughput": manifest["throughput"]}, indent=2)
    )
    return manifest


if __name__ == "__main__":
    run_job(main, parse_args, bad_input=(ResourceError,))
