"""Run a search space as a Ray Tune sweep: ASHA, MLflow, a report and the best config.

    result = run_sweep(SweepRequest(space=Path("tune_spaces/hidvae.yaml"),
                                    dataset="beauty", root=root))
    result.best          # {"trial_id", "params", "metric", "value"}
    result.best_config   # <root>/sweeps/<name>/report/best_config.yaml, ready for the job
    result.report        # <root>/sweeps/<name>/report/sweep_report.html (+ PNGs)

What it does, in order:
1. loads and checks the space (`spaces.load_space`), applies `overrides` to
   its base values, and lets the stage resolve and check its inputs once
   (embeddings, tags, splits), so a bad input fails before any trial starts;
2. derives `max_concurrent_trials` from the cluster's resources and what one
   trial holds (`max_concurrent_trials`);
3. runs a `Tuner` over `trainables.run_trial` with ASHA on the space's metric
   (time unit: the epoch = one report), every trial an MLflow run in the
   experiment `sidrec-<dataset>-sweep-<stage>` (`_mlflow.MlflowTrials`);
   Tune's own CSV/JSON/TensorBoard files land in <root>/sweeps/<name>/;
4. writes the static report and the best trial's config as YAML for the job,
   and logs both into the best trial's MLflow run.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sidrec import tracking
from sidrec.artifacts import write_text_atomic
from sidrec.tuning.spaces import SearchSpace, SpaceError, load_space
from sidrec.tuning.trainables import (
    TrialSetup,
    driver_resources,
    run_trial,
    worker_resources,
)

__all__ = [
    "SweepRequest",
    "SweepResult",
    "run_sweep",
    "max_concurrent_trials",
    "experiment_name",
    "best_config_document",
]

log = logging.getLogger(__name__)


@dataclass
class SweepRequest:
    """Where a sweep reads and writes and how it runs (what it varies is the space)."""

    space: Path  # tune_spaces/<stage>.yaml
    dataset: str
    root: Path  # the dataset's artifact root (catalog/, embeddings/, splits/)
    name: str | None = None  # None: <space stem>-<8 hex>; unique, Tune resumes a reused name
    embeddings: Path | None = None  # tokenizer stages; None: the one file in embeddings/
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the space's base
    num_samples: int | None = None  # None: the space's
    num_workers: int = 0  # 0 = the trial process trains; N = N Ray Train workers per trial
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_concurrent: int | None = None  # None = from the cluster's resources
    max_failures: int = 0  # trial restarts (from its last checkpoint), and Train worker restarts


@dataclass
class SweepResult:
    name: str
    path: Path  # the Tune experiment folder
    report: Path  # sweep_report.html
    best_config: Path  # best_config.yaml
    best: dict[str, Any]
    trials: pd.DataFrame  # one row per trial
    experiment_id: str
    tracking_uri: str
    max_concurrent: int


def experiment_name(dataset: str, stage: str) -> str:
    return f"sidrec-{dataset}-sweep-{stage}"


def max_concurrent_trials(cluster: dict[str, float], setup: TrialSetup) -> int:
    """Trials that fit at once: for each resource one trial needs, what the
    cluster has over what a trial takes (the trial process, or its N Train
    workers); at least 1. A GPU trial on a cluster without GPUs is an error
    (Ray would wait forever for it; docs/ARCHITECTURE.md, Ray pitfalls)."""
    unit = worker_resources(setup)
    per_trial = {k: v * max(setup.num_workers, 1) for k, v in unit.items() if v > 0}
    if setup.num_workers > 0:
        per_trial["CPU"] = per_trial.get("CPU", 0.0) + driver_resources(setup)["cpu"]
    fits = []
    for resource, need in per_trial.items():
        have = cluster.get(resource, 0.0)
        if have < need:
            raise RuntimeError(
                f"one trial needs {need:g} {resource} but the Ray cluster has {have:g}; "
                + ("drop --use-gpu or add GPU nodes" if resource == "GPU" else "use fewer workers")
            )
        fits.append(math.floor(have / need + 1e-9))
    return max(1, min(fits)) if fits else 1


def run_sweep(request: SweepRequest) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sidrec.distributed import init_ray
    from sidrec.tuning._mlflow import MlflowTrials, ensure_experiment

    space = _with_overrides(load_space(request.space), request.overrides)
    stage = space.stage
    root = Path(request.root).resolve()
    # (1) inputs, resolved and checked once on the driver
    context = stage.prepare(root, request.embeddings)
    _check_trials_build(space, context)
    name = request.name or f"{Path(request.space).stem}-{uuid.uuid4().hex[:8]}"
    storage = root / "sweeps"
    setup = TrialSetup(
        stage=space.stage_name,
        base=space.base,
        context=context,
        storage_path=str(storage / name / "train"),
        num_workers=request.num_workers,
        use_gpu=request.use_gpu,
        cpus_per_worker=request.cpus_per_worker,
        max_failures=request.max_failures,
    )

    # (2) concurrency from the cluster
    init_ray()
    concurrency = request.max_concurrent or max_concurrent_trials(ray.cluster_resources(), setup)

    # (3) the Tuner, one MLflow run per trial
    uri = tracking.tracking_uri(root)
    experiment = experiment_name(request.dataset, stage.name)
    location = (root / "mlruns").as_uri() if uri.startswith("sqlite:") else None
    experiment_id = ensure_experiment(uri, experiment, location)
    mlflow_cb = MlflowTrials(
        uri,
        experiment_id,
        sweep=name,
        tags={"stage": stage.name, "space": str(request.space), "dataset": request.dataset},
        fixed_params=dict(space.base),
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=setup), driver_resources(setup)
    )
    tuner = tune.Tuner(
        trainable,
        param_space=space.param_space(),
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            num_samples=request.num_samples or space.num_samples,
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=space.max_epochs(),
                # A run shortened below the grace period (--set epochs=2 on a
                # small catalog) just runs every trial to the end: ASHA asserts otherwise.
                grace_period=min(space.grace_period, space.max_epochs()),
                reduction_factor=space.reduction_factor,
            ),
            max_concurrent_trials=concurrency,
            trial_name_creator=lambda trial: f"trial-{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial-{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=[mlflow_cb],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=request.max_failures),
            verbose=1,
        ),
    )
    log.info(
        "sweep %s: %d trial(s) of %s, %d at a time, metric %s (%s)",
        name,
        space.num_trials(),
        stage.name,
        concurrency,
        space.metric,
        space.mode,
    )
    grid = tuner.fit()
    if grid.num_errors == len(grid):
        raise RuntimeError(f"every trial of sweep {name} failed; first error: {grid.errors[0]}")

    # (4) report + best config
    from sidrec.tuning.report import trial_table, write_report

    trials, histories = trial_table(grid, space)
    best_row = trials.iloc[0]
    best = {
        "trial_id": best_row["trial_id"],
        "params": {k: _plain(best_row[f"param/{k}"]) for k in space.params},
        "metric": space.metric,
        "value": float(best_row["metric"]),
    }
    report_dir = Path(grid.experiment_path) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    best_path = report_dir / "best_config.yaml"
    document = best_config_document(space, best, name, request.dataset, context)
    write_text_atomic(best_path, _yaml_with_header(document, space, best, name))
    report = write_report(
        report_dir,
        space,
        trials,
        histories,
        best,
        sweep=name,
        tracking_uri=uri,
        experiment_id=experiment_id,
        tune_path=Path(grid.experiment_path),
    )
    mlflow_cb.log_sweep_files(best["trial_id"], report_dir)
    return SweepResult(
        name=name,
        path=Path(grid.experiment_path),
        report=report,
        best_config=best_path,
        best=best,
        trials=trials,
        experiment_id=experiment_id,
        tracking_uri=uri,
        max_concurrent=concurrency,
    )


def _with_overrides(space: SearchSpace, overrides: dict[str, Any]) -> SearchSpace:
    """The space with `overrides` (the sweep command's --set) in its base, re-checked."""
    if not overrides:
        return space
    from dataclasses import replace

    defaults = space.stage.defaults()
    for key in overrides:
        if key not in defaults:
            raise SpaceError(space.path, f"--set {key}", f"not a {space.stage_name} key")
        if key in space.params:
            raise SpaceError(space.path, f"--set {key}", "is swept by the space (params)")
    base = {**space.base, **overrides}
    try:
        space.stage.check(base)
    except (ValueError, TypeError) as err:
        raise SpaceError(space.path, "--set", str(err)) from None
    return replace(space, base=base)


def _check_trials_build(space: SearchSpace, context: dict[str, Any]) -> None:
    """Every listed value (and range end) builds a trial config against the real
    inputs (e.g. a codebook larger than this catalog), before Tune starts."""
    from sidrec.tuning.spaces import DISTRIBUTIONS

    space.stage.trial(space.base, context)
    for name, param in space.params.items():
        for point in DISTRIBUTIONS[param.kind].points(param.values):
            try:
                space.stage.trial({**space.base, name: point}, context)
            except ValueError as err:
                raise SpaceError(space.path, f"params.{name}", f"{point!r}: {err}") from None


def best_config_document(
    space: SearchSpace,
    best: dict[str, Any],
    sweep: str,
    dataset: str,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What best_config.yaml holds: the values, and the job line that trains them.
    With the sweep's prepared `context`, artifact paths come out absolute (Stage.resolve)."""
    stage = space.stage
    values = {k: _plain(v) for k, v in space.values(best["params"]).items()}
    if context is not None:
        values = stage.resolve(values, context)
    args = stage.job_args(values)
    command = " ".join(["python", stage.job, "--dataset", dataset, *(_quote(a) for a in args)])
    return {
        "stage": stage.name,
        "job": stage.job,
        "sweep": sweep,
        "space": str(space.path),
        "trial_id": best["trial_id"],
        "metric": space.metric,
        "mode": space.mode,
        "value": best["value"],
        "values": values,
        "args": args,
        "command": command,
    }


def _yaml_with_header(document: dict[str, Any], space, best, sweep: str) -> str:
    header = (
        f"# Best trial of sweep {sweep} ({space.path}): {space.metric} = {best['value']:.6g}"
        f" ({space.mode}).\n"
        "# Train it with the job: the `command` line, or\n"
        f"#   python {document['job']} --dataset <dataset> <args...>\n"
        "# `values` are what the trial trained with (the space's base + its draws).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=100)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _plain(value: Any) -> Any:
    """numpy scalars and tuples -> YAML-friendly Python values."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value
