"""Where datasets live: `--data-dir`, else `SIDREC_DATA_DIR`; never a built-in path."""

from __future__ import annotations

import os
from pathlib import Path

from sidrec.data._errors import DataError

ENV_DATA_DIR = "SIDREC_DATA_DIR"


def resolve_data_dir(cli_value: str | os.PathLike | None = None) -> Path:
    """The folder holding one sub-folder per dataset (amazon_beauty/, yelp/, ...).

    A command-line value wins over the environment; with neither, fail with
    the fix rather than guessing a path.
    """
    raw = cli_value if cli_value not in (None, "") else os.environ.get(ENV_DATA_DIR)
    if not raw:
        raise DataError(
            f"no data directory given: pass --data-dir DIR or set {ENV_DATA_DIR}=DIR "
            "(the folder that holds amazon_beauty/, yelp/, ...); "
            "`python -m sidrec.data.download NAME --data-dir DIR` fetches a public benchmark"
        )
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise DataError("data directory does not exist", file=path)
    return path
