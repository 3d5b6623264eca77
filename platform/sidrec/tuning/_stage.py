"""The `Stage` value every sweep stage is (see sidrec.tuning.stages)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ANY_CATALOG", "Stage", "TrainLoop"]

TrainLoop = Callable[[dict[str, Any], Any], None]
# Config validation without a catalog: large enough that K <= N always holds;
# the real N is checked again when the sweep starts (Stage.prepare).
ANY_CATALOG = sys.maxsize


@dataclass(frozen=True)
class Stage:
    """One tunable pipeline stage (see the module docstring)."""

    name: str
    job: str  # the entry point the best config is written for
    description: str
    # Every key a space may set, with the job's default (its type is the key's type).
    defaults: Callable[[], dict[str, Any]]
    # Raise ValueError (message starting with the key) when an assignment is invalid.
    check: Callable[[dict[str, Any]], None]
    # A metric every report carries, so ASHA can compare trials at every epoch.
    metric_pattern: str
    default_metric: str
    default_mode: str
    # The key bounding the number of reports: ASHA's max_t.
    epochs_key: str
    # Driver side, once per sweep: resolve and check the inputs (fail before any trial).
    prepare: Callable[[Path, Path | None], dict[str, Any]]
    # Trial side: (values, prepared context) -> (train_loop, its config).
    trial: Callable[[dict[str, Any], dict[str, Any]], tuple[TrainLoop, dict[str, Any]]]
    # The job's arguments that reproduce `values` (the best-config YAML).
    job_args: Callable[[dict[str, Any]], list[str]]
    # (values, prepared context) -> the values as a job outside the sweep needs
    # them: H2Rec's SID table paths, relative to the artifact root in a space,
    # made absolute. Identity for stages whose values are all plain numbers.
    resolve: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = lambda values, ctx: values

    def metric_ok(self, metric: str) -> bool:
        return re.fullmatch(self.metric_pattern, metric) is not None
