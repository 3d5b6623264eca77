"""Arguments every job shares, so `--dataset`, `--data-dir`, `--artifact-root` mean
the same thing everywhere."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

__all__ = ["add_common_args", "artifact_root", "setup_logging", "ENV_ARTIFACT_ROOT"]

ENV_ARTIFACT_ROOT = "SIDREC_ARTIFACT_ROOT"
# Under `ray job submit` the working directory is a throwaway copy, so the
# default must not be relative to it: a folder in the home directory survives.
DEFAULT_ARTIFACT_BASE = Path("~/sidrec-artifacts")


def add_common_args(parser: argparse.ArgumentParser, default_dataset: str = "beauty") -> None:
    parser.add_argument(
        "--dataset",
        default=default_dataset,
        help="registry name (beauty, sports, yelp, movielens_100k)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="folder holding the raw datasets (else $SIDREC_DATA_DIR)"
    )
    parser.add_argument(
        "--artifact-root",
        default=None,
        help=f"this dataset's artifact folder (else ${ENV_ARTIFACT_ROOT}/<dataset>, "
        f"else {DEFAULT_ARTIFACT_BASE}/<dataset>)",
    )


def artifact_root(args: argparse.Namespace) -> Path:
    if args.artifact_root:
        return Path(args.artifact_root).expanduser().resolve()
    base = Path(os.environ.get(ENV_ARTIFACT_ROOT) or DEFAULT_ARTIFACT_BASE)
    return (base.expanduser() / args.dataset).resolve()


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
