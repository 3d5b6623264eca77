"""The Tune trial: one `train_loop(config, reporter)` per trial, the same loop the jobs run.

Two ways a trial trains, chosen by `TrialSetup.num_workers`:

- 0 (default, and what fits a small machine): the trial actor runs the loop
  itself with a `TuneReporter`, the `sidrec.distributed.Reporter` protocol
  on top of `ray.tune.report` / `ray.tune.get_checkpoint`. One trial = one
  process, so a 2-CPU box runs two trials at once.
- N >= 1: Train inside Tune the Ray 2.60 (Train V2) way: the trial function
  is a driver that builds a `TorchTrainer` through `sidrec.distributed.fit`
  with `RunConfig(name=f"train-{trial_id}", callbacks=[TuneReportCallback()])`,
  so every worker report reaches Tune (and ASHA) as the trial's result.
  The driver itself takes a sliver of a CPU (`driver_resources`); the workers
  take the rest.

    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                                           driver_resources(setup)), ...)
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sidrec.tuning.stages import stage_for

__all__ = ["TrialSetup", "TuneReporter", "run_trial", "driver_resources", "worker_resources"]

log = logging.getLogger(__name__)

DRIVER_CPU = 0.01  # what a Train-inside-Tune trial's driver asks for


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one sweep shares (sent once through the object store)."""

    stage: str  # a key of sidrec.tuning.stages.STAGES
    base: dict[str, Any]  # the space's fixed values
    context: dict[str, Any]  # Stage.prepare's output: resolved input paths, N
    storage_path: str  # Train-inside-Tune runs keep their checkpoints here
    num_workers: int = 0  # 0 = the trial process trains; N = N Ray Train workers
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # of the trial (num_workers 0) or of each Train worker
    max_failures: int = 0  # Train worker restarts inside one trial (num_workers >= 1)


class TuneReporter:
    """`sidrec.distributed.Reporter` inside a Tune trial process: metrics and
    checkpoints go to `ray.tune.report`, a restored trial resumes from
    `ray.tune.get_checkpoint()`."""

    rank = 0
    world_size = 1

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._restored: Path | None = None

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, float], save=None) -> None:
        from ray import tune

        if save is None:
            tune.report(dict(metrics))
            return
        with tempfile.TemporaryDirectory() as folder:
            save(Path(folder))
            tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(folder))

    def latest_checkpoint(self) -> Path | None:
        from ray import tune

        if self._restored is None:
            checkpoint = tune.get_checkpoint()
            if checkpoint is None:
                return None
            self._restored = Path(checkpoint.to_directory(tempfile.mkdtemp(prefix="sidrec-trial-")))
        return self._restored


def worker_resources(setup: TrialSetup) -> dict[str, float]:
    """What one unit of training holds: the trial process, or each Train worker."""
    return {"CPU": setup.cpus_per_worker, "GPU": 1.0 if setup.use_gpu else 0.0}


def driver_resources(setup: TrialSetup) -> dict[str, float]:
    """The trial actor's own request (tune.with_resources)."""
    if setup.num_workers == 0:
        unit = worker_resources(setup)
        return {"cpu": unit["CPU"], "gpu": unit["GPU"]}
    # A Train driver only waits on its controller (itself num_cpus=0): holding a
    # whole CPU would idle one per trial and starve the workers on small nodes.
    # Tune refuses an empty request, hence a sliver.
    return {"cpu": DRIVER_CPU}


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """One Tune trial: `params` (the trial's draws) on top of the space's base values."""
    from ray import tune

    stage = stage_for(setup.stage)
    values = {**setup.base, **params}
    loop, config = stage.trial(values, setup.context)
    if setup.num_workers == 0:
        device = torch.device("cuda" if setup.use_gpu else "cpu")
        # Ray caps OMP threads at the actor's CPUs; torch's pool should match it.
        torch.set_num_threads(max(1, int(setup.cpus_per_worker)))
        loop(config, TuneReporter(device))
        return

    from ray.tune.integration.ray_train import TuneReportCallback

    from sidrec.distributed import RunSpec, fit

    trial_id = tune.get_context().get_trial_id()
    spec = RunSpec(
        # Per trial, never a timestamp: a restored trial resumes its own Train run.
        name=f"train-{trial_id}",
        storage_path=setup.storage_path,
        num_workers=setup.num_workers,
        use_gpu=setup.use_gpu,
        max_failures=setup.max_failures,
    )
    fit(loop, config, spec, callbacks=[TuneReportCallback()])
