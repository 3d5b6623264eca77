"""What every job shares: the same flags (`--dataset`, `--data-dir`,
`--artifact-root`, `--set`, `--config`), the same defaults, the same logging and
the same exit codes.

    if __name__ == "__main__":
        run_job(main, parse_args)      # 0 ok, 2 bad input (the message names it), 1 internal
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidrec.overrides import parse_assignments, read_config_file

__all__ = [
    "ENV_ARTIFACT_ROOT",
    "DEFAULT_ALIAS",
    "DEFAULT_MAX_FAILURES",
    "EXIT_OK",
    "EXIT_INTERNAL",
    "EXIT_BAD_INPUT",
    "add_common_args",
    "add_config_args",
    "config_epilog",
    "config_overrides",
    "artifact_root",
    "setup_logging",
    "run_job",
    "dataset_name",
    "DEFAULT_DATASET",
]

ENV_ARTIFACT_ROOT = "SIDREC_ARTIFACT_ROOT"
# Under `ray job submit` the working directory is a throwaway copy, so the
# default must not be relative to it: a folder in the home directory survives.
DEFAULT_ARTIFACT_BASE = Path("~/sidrec-artifacts")
# The registry alias every job moves to the version it registers; serving
# follows `models:/<name>@candidate` ("latest" is reserved by MLflow).
DEFAULT_ALIAS = "candidate"
# Ray Train restarts from the last checkpoint this many times after a worker
# dies: one restart covers a lost node without looping on a real bug.
DEFAULT_MAX_FAILURES = 1
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
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


def add_config_args(parser: argparse.ArgumentParser, what: str = "the job's config") -> None:
    """`--config FILE.yaml` then `--set KEY=VALUE ...` (later wins), keys as in
    tune_spaces/*.yaml; `sidrec.overrides` parses them against the typed config."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help=f"YAML mapping of field: value over {what} (sections for nested fields)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one field of {what}, dotted for nested ones (backbone.lr=2e-4); "
        "repeatable, applied after --config",
    )


def config_epilog(cfg: Any, title: str = "Config fields") -> str:
    """`--help`'s closing section: every field of the default config `cfg`, with
    its default and meaning (`sidrec.overrides.describe_config`)."""
    from sidrec.overrides import describe_config

    return f"{title} (--set KEY=VALUE, --config FILE.yaml):\n{describe_config(cfg)}"


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted-key values of `--config` with `--set` on top, for
    `sidrec.overrides.apply_overrides(cfg, values, source="--config/--set")`."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values.update(read_config_file(args.config))
    values.update(parse_assignments(getattr(args, "overrides", [])))
    return values


def run_job(
    main: Callable[[argparse.Namespace], Any],
    parse_args: Callable[[], argparse.Namespace],
    bad_input: tuple[type[BaseException], ...] = (),
) -> None:
    """Run a job's `main(parse_args())` and exit with the same codes everywhere.

    0: done. 2: bad input; one line on stderr names the flag, file or field (every
    ValueError we raise does: DataError, SpaceError, OverrideError, ...; argparse
    exits 2 itself), plus whatever else the job lists in `bad_input` (e.g. a
    ResourceError for a cluster without the GPUs asked for). 1: anything else, an
    internal error, with its traceback.
    """
    setup_logging()
    try:
        main(parse_args())
    except (ValueError, *bad_input) as err:
        # The traceback helps a developer, not a user with a typo: keep it at DEBUG.
        logging.getLogger("sidrec.cli").debug("bad input", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except SystemExit as err:
        if isinstance(err.code, str):  # `raise SystemExit("--flag: why")`: bad input too
            message = err.code if err.code.startswith("error:") else f"error: {err.code}"
            print(message, file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        print("error: internal error (traceback above); please report it", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)
