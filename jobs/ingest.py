"""Stage 1, ingest: a raw dataset -> canonical catalog, interactions and leave-one-out splits.

    python jobs/ingest.py --dataset beauty --data-dir /path/to/datasets
    python jobs/ingest.py --custom shop/spec.yaml --artifact-root ~/sidrec-artifacts/shop
    ray job submit --working-dir . -- python jobs/ingest.py --dataset beauty --data-dir /data

Your own catalog (--custom) is named by the spec's `name:` (or --dataset), never
a public dataset's name; every later job then finds that name, and everything
else, in --artifact-root, without --data-dir (README, "Your own catalog").

Writes <artifact-root>/catalog/{items,interactions}.parquet and
<artifact-root>/splits/{train,valid,test}.parquet, each folder with a
manifest.json (inputs with sha256, config, counts, library versions, MLflow
run id). Re-running with the same inputs and config changes nothing.

Config: `sidrec.data.IngestOptions` (its fields, defaults and meanings at the end
of this help): `--config FILE.yaml`, then `--set FIELD=VALUE`; --kcore and
--max-history are shortcuts.

Options and their trade-offs:
  --kcore K         iterative K-core on users and items (default: the dataset's,
                    5 for Amazon and Yelp, none for MovieLens); higher = denser,
                    fewer cold items, less like production traffic.
  --max-history H   most recent items kept per history (default 20, TIGER's
                    setting); longer helps SASRec-style models, costs memory.
  --custom SPEC     your own catalog: a YAML/JSON file describing the items and
                    interactions files and their columns (sidrec.data.CustomSpec).
  --force           rewrite even when an identical run exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from sidrec.cli import (
    add_common_args,
    add_config_args,
    artifact_root,
    config_epilog,
    config_overrides,
    run_job,
)
from sidrec.data import DATASETS, CustomSpec, DataError, IngestOptions, ensure_ingested
from sidrec.overrides import apply_overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(IngestOptions()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    add_config_args(parser, "the ingest options (fields listed at the end)")
    parser.add_argument("--kcore", type=int, default=None, help="shortcut for --set kcore=K")
    parser.add_argument(
        "--max-history", type=int, default=None, help="shortcut for --set max_history=H"
    )
    parser.add_argument("--custom", default=None, help="YAML/JSON spec of your own catalog")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    parser.add_argument("--force", action="store_true")
    return parser.parse_args(argv)


def load_custom_spec(path: Path) -> CustomSpec:
    """Parse a custom-catalog spec; every error names the spec file."""
    if not path.is_file():
        raise DataError("custom dataset spec not found", file=path)
    try:
        mapping = yaml.safe_load(path.read_text()) or {}
        return CustomSpec.from_mapping(mapping, base_dir=path.parent)
    except yaml.YAMLError as err:
        raise DataError(f"not valid YAML/JSON: {err}", file=path) from None
    except DataError as err:
        raise DataError(err.reason, file=path, field=err.field) from None


def check_custom_name(name: str, spec: Path) -> None:
    """A public dataset's name would make later jobs re-ingest the public data
    over your catalog whenever its raw folder is at hand."""
    if name in DATASETS:
        raise DataError(
            f"{name!r} is a public dataset's name; give your catalog its own "
            "(`name:` in the spec or --dataset NAME)",
            file=spec,
            field="name",
        )


def build_options(args: argparse.Namespace) -> IngestOptions:
    """IngestOptions' defaults, the shortcut flags, then --config, then --set."""
    shortcuts = {"kcore": args.kcore, "max_history": args.max_history}
    given = {k: v for k, v in shortcuts.items() if v is not None}
    options = apply_overrides(IngestOptions(), given, source="--flag")
    return apply_overrides(options, config_overrides(args), source="--config/--set")


def main(args: argparse.Namespace) -> dict:
    options = build_options(args)
    custom = load_custom_spec(Path(args.custom)) if args.custom else None
    # The dataset name keys the artifact folder, the MLflow experiment and the
    # registered model names; every later job reads it from the artifact root.
    if custom is not None:
        args.dataset = args.dataset or custom.name
        check_custom_name(args.dataset, Path(args.custom))
    root = artifact_root(args)
    result = ensure_ingested(
        dataset=args.dataset,
        artifact_root=root,
        data_dir=args.data_dir,
        kcore=options.kcore,
        max_history=options.max_history,
        custom=custom,
        track=not args.no_mlflow,
        force=args.force,
    )
    state = "unchanged" if result.skipped else "written"
    print(f"ingest {state}: {result.artifact_root}")
    print(json.dumps(result.manifest["counts"], indent=2))
    return result.manifest


if __name__ == "__main__":
    run_job(main, parse_args)
