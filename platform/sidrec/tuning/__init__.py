"""Ray Tune sweeps over sidrec's trainables (docs/ARCHITECTURE.md stage 6).

    from sidrec.tuning import SweepRequest, load_space, run_sweep
    space = load_space("tune_spaces/hidvae.yaml")     # SpaceError names file + key
    result = run_sweep(SweepRequest(space=space.path, dataset="beauty", root=root))

- `spaces`: tune_spaces/*.yaml -> checked `SearchSpace` -> Tune domains;
- `stages`: `stage:` name -> the job's train loop, config builder, job args;
- `trainables`: the trial (in-process `TuneReporter`, or Train inside Tune);
- `sweep`: the Tuner (ASHA, concurrency from resources, MLflow per trial),
  best config YAML for the job;
- `report`: sweep_report.html + PNGs.
"""

from sidrec.tuning.spaces import Param, SearchSpace, SpaceError, load_space, read_space_file
from sidrec.tuning.stages import STAGES, Stage, stage_for
from sidrec.tuning.sweep import (
    SweepRequest,
    SweepResult,
    best_config_document,
    experiment_name,
    max_concurrent_trials,
    run_sweep,
)
from sidrec.tuning.trainables import TrialSetup, TuneReporter, run_trial

__all__ = [
    "Param",
    "STAGES",
    "SearchSpace",
    "SpaceError",
    "Stage",
    "SweepRequest",
    "SweepResult",
    "TrialSetup",
    "TuneReporter",
    "best_config_document",
    "experiment_name",
    "load_space",
    "max_concurrent_trials",
    "read_space_file",
    "run_sweep",
    "run_trial",
    "stage_for",
]
