"""Arguments every job shares, so `--dataset`, `--data-dir`, `--artifact-root` mean
the same thing everywhere."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

__all__ = [
    "add_common_args",
    "artifact_root",
    "dataset_name",
    "setup_logging",
    "DEFAULT_DATASET",
    "ENV_ARTIFACT_ROOT",
]

ENV_ARTIFACT_ROOT = "SIDREC_ARTIFACT_ROOT"
# Under `ray job submit` the working directory is a throwaway copy, so the
# default must not be relative to it: a folder in the home directory survives.
DEFAULT_ARTIFACT_BASE = Path("~/sidrec-artifacts")
DEFAULT_DATASET = "beauty"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset name: a public one (beauty, sports, yelp, movielens_100k) or the name "
        "you ingested your own catalog under (default: the one in --artifact-root, else beauty)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the raw public datasets (else $SIDREC_DATA_DIR); "
        "needed only when a public dataset must be ingested",
    )
    parser.add_argument(
        "--artifact-root",
        default=None,
        help=f"this dataset's artifact folder (else ${ENV_ARTIFACT_ROOT}/<dataset>, "
        f"else {DEFAULT_ARTIFACT_BASE}/<dataset>)",
    )


def artifact_root(args: argparse.Namespace) -> Path:
    """The dataset's artifact folder; also settles `args.dataset` when --dataset
    was not given (see `dataset_name`), since both name the same dataset."""
    args.dataset = dataset_name(args)
    if args.artifact_root:
        return Path(args.artifact_root).expanduser().resolve()
    base = Path(os.environ.get(ENV_ARTIFACT_ROOT) or DEFAULT_ARTIFACT_BASE)
    return (base.expanduser() / args.dataset).resolve()


def dataset_name(args: argparse.Namespace) -> str:
    """--dataset, else the name the ingest in --artifact-root was written under
    (so `--artifact-root ~/shop` alone names your own catalog), else beauty."""
    if args.dataset:
        return args.dataset
    if args.artifact_root:
        manifest = Path(args.artifact_root).expanduser() / "catalog" / "manifest.json"
        try:
            name = json.loads(manifest.read_text()).get("dataset")
        except (OSError, ValueError, AttributeError):
            name = None  # no ingest there yet: ensure_ingested says what to do
        if isinstance(name, str) and name:
            return name
    return DEFAULT_DATASET


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
