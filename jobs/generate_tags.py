"""Stage 3, tags: hierarchical item tags by retrieval + an LLM chooser (HiD-VAE), on a Ray Data actor pool.

    python jobs/generate_tags.py --dataset yelp --data-dir /path/to/datasets --lm /models/qwen2.5-1.5b-instruct
    python jobs/generate_tags.py --dataset beauty --data-dir /path/to/datasets --lm /tmp/tiny-lm --limit 200   # smoke run
    ray job submit --working-dir . -- python jobs/generate_tags.py --dataset yelp --data-dir /data \
        --artifact-root /shared/artifacts/yelp --lm /models/qwen2.5-7b-instruct --backend vllm --num-gpus 1

Per level l (coarse -> fine): the top-k tags of the level's pool by cosine
similarity between the item text's and the tag path's MiniLM embeddings
(HiD-VAE Eq. 3; in a tree only the children of the tag chosen at l-1), then
the LM picks the candidate whose tokens it gives the highest log-likelihood
after a prompt with the item text, the tags chosen above and the options
(Eq. 4). Writes <artifact-root>/tags/<run>.parquet (item_id, tags:
list<string> per level, logprobs) and <run>.manifest.json beside it, which
HiD-VAE reads as is (`jobs/train_hidvae.py --tags FILE`). Ingests the dataset
first if needed. Re-running with the same inputs and config does nothing.
Under `ray job submit` give absolute paths.

Options and their trade-offs:
  --lm PATH            causal LM, local folder or hub id (required). Quality comes from
                       here: a random tiny LM (tests) chooses at random among the candidates.
  --backend B          hf (transformers; CPU or one GPU per actor) or vllm (GPU clusters
                       with the `gpu` extra, prefix caching shares each prompt across its
                       k candidates; fails fast where vllm or GPUs are missing).
  --pool SRC           catalog (default): the tree of the catalog's category paths
                       (Beauty: ground truth, so the result measures the chooser; Yelp:
                       LLM-RecSys-ID's derived closed_categories paths, normalized here);
                       catalog-flat: the same names per level without parents (no
                       restriction: every level-l tag is a candidate).
  --taxonomy FILE      a YAML/JSON pool instead (`tree:` nested, or `levels:` flat lists;
                       sidrec.tagging.pool), e.g. a hand-made hierarchy over Yelp's flat tags.
  --levels L           tag levels (3: Beauty's paths have >= 3 steps for 86% of items).
  --top-k K            candidates per level: recall of the true tag grows with K
                       (docs/RESULTS_tags.md), LM cost is K scored pairs per item and level.
  --template T         item text (columns of catalog/items.parquet). Default per dataset,
                       never the category path itself (that would leak the answer).
  --per-token          rank by the mean log-prob per token instead of the total.
  --concurrency N      actors, each with an encoder and an LM copy. Default: one per GPU
                       with --num-gpus, else one per CPU left after Ray Data's read task.
  --num-gpus G         GPUs per actor; fails fast on a cluster without GPUs.
  --rows-per-call R    items per actor call (LM batches grow with it).
  --batch-size B       (prompt, candidate) pairs per LM forward pass.
  --limit N            tag only the first N items (item_id < N): smoke runs.
  --run NAME           output name, tags/<NAME>.parquet (default "tags").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import ray

from sidrec.cli import (
    add_common_args,
    add_config_args,
    artifact_root,
    config_epilog,
    config_overrides,
    run_job,
)
from sidrec.data import DataError, ensure_ingested
from sidrec.embed import ResourceError
from sidrec.overrides import apply_overrides
from sidrec.tagging import (
    LM_BACKENDS,
    TagConfig,
    TagPool,
    ensure_tagged,
    get_lm_backend,
    load_taxonomy,
    pool_from_paths,
)

# Item text per dataset: what the item is, never its category path (the answer).
TEMPLATES = {
    "beauty": "Title: {title}\nBrand: {brand}",
    "sports": "Title: {title}\nBrand: {brand}",
    "yelp": "Business: {title}\nYelp tags: {tags}",
}
POOLS = ("catalog", "catalog-flat")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    sample = TagConfig(lm=get_lm_backend("hf").config(model="<--lm>"))
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(sample, "Config fields, the defaults (--backend hf)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--lm", default=None, help="causal LM: local folder or hub id (required)")
    parser.add_argument("--backend", choices=sorted(LM_BACKENDS), default="hf")
    parser.add_argument("--pool", choices=POOLS, default="catalog")
    parser.add_argument("--taxonomy", default=None, help="YAML/JSON tag pool (overrides --pool)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--template", default=None, help="default: per dataset (TEMPLATES)")
    parser.add_argument("--per-token", action="store_true")
    parser.add_argument("--concurrency", type=int, default=0, help="actors; 0 = from the cluster")
    parser.add_argument("--num-gpus", type=float, default=0.0)
    parser.add_argument("--rows-per-call", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=0, help="first N items only (0 = all)")
    parser.add_argument("--run", default="tags")
    parser.add_argument("--no-ingest", action="store_true", help="tag the catalog already there")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--force", action="store_true")
    add_config_args(parser, "the TagConfig (lm.FIELD, encoder.FIELD for its parts)")
    return parser.parse_args(argv)


def tag_config(args: argparse.Namespace) -> TagConfig:
    """The --backend's LM builder fed the flags that were set, and the run's TagConfig."""
    if not args.lm:
        raise ValueError("--lm is required: a local causal LM folder or hub id")
    lm_kwargs = {"model": args.lm, "per_token": args.per_token}
    if args.batch_size is not None:
        lm_kwargs["batch_size"] = args.batch_size
    return TagConfig(
        lm=get_lm_backend(args.backend).config(**lm_kwargs),
        levels=args.levels,
        top_k=args.top_k,
        template=args.template or TEMPLATES.get(args.dataset, "{title}"),
        rows_per_call=args.rows_per_call,
        num_actors=args.concurrency,
        num_gpus=args.num_gpus,
    )


def tag_pool(args: argparse.Namespace, root: Path, levels: int) -> TagPool:
    if args.taxonomy:
        return load_taxonomy(args.taxonomy, levels=levels)
    items = root / "catalog" / "items.parquet"
    if not items.is_file():
        raise DataError("not found: run jobs/ingest.py for this dataset first", file=items)
    if "categories" not in pq.read_schema(items).names:
        raise DataError(
            "no category paths to build a pool from: pass --taxonomy FILE",
            file=items,
            field="categories",
        )
    paths = pq.read_table(items, columns=["categories"]).column("categories").to_pylist()
    return pool_from_paths(paths, levels, tree=args.pool == "catalog", source=str(items))


def main(args: argparse.Namespace) -> dict:
    # Validate and build the whole config before any data or Ray work.
    root = artifact_root(args)  # first: it settles --dataset, which picks the template
    try:
        cfg = apply_overrides(tag_config(args), config_overrides(args), source="--config/--set")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if not args.no_ingest:
        ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    pool = tag_pool(args, root, cfg.levels)
    if args.no_progress:
        ray.data.DataContext.get_current().enable_progress_bars = False
    result = ensure_tagged(
        root,
        cfg,
        pool,
        dataset=args.dataset,
        run=args.run,
        limit=args.limit,
        track=not args.no_mlflow,
        force=args.force,
    )
    manifest = result.manifest
    state = "unchanged" if result.skipped else "written"
    print(
        f"tags {state}: {result.path} ({manifest['counts']['items']} items, "
        f"{cfg.levels} levels, pool sizes {manifest['pool']['sizes']})"
    )
    summary = {k: manifest.get(k) for k in ("counts", "agreement_with_catalog", "throughput")}
    print(json.dumps(summary, indent=2))
    return manifest


if __name__ == "__main__":
    run_job(main, parse_args, bad_input=(ResourceError,))
