"""One MLflow run per Tune trial, all in one experiment, logged from the Tune driver.

Ray's `MLflowLoggerCallback` does the same job but logs one metric per call
(one SQLite transaction each: ~50 per epoch here) and passes keys such as
`best_valid/ndcg@10` through unchanged, which MLflow rejects ('@'). This
callback batches each result (`log_batch`) and cleans keys with
`sidrec.tracking.metric_key`; otherwise it follows the Ray one: params at
trial start, metrics per result (step = epoch), the trial folder as
artifacts at the end, FINISHED / FAILED status.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sidrec.tracking import flatten, log_metric_batch, metric_key

__all__ = ["MlflowTrials", "ensure_experiment"]

# Tune's bookkeeping fields: not model metrics, kept out of the comparison views.
_SKIP = {
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "done",
    "checkpoint_dir_name",
}
_BATCH = 1000  # MLflow's log_batch limit


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """The experiment's id, created if needed (with local artifact storage for SQLite)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        # The UI of MLflow 3 opens a GenAI overview unless told this is model training.
        return client.create_experiment(
            name,
            artifact_location=artifact_location,
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    except Exception:  # created meanwhile by another sweep
        return client.get_experiment_by_name(name).experiment_id


class MlflowTrials(Callback):
    """Tune callback: trial -> MLflow run (params, per-epoch metrics, trial files)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        sweep: str,
        tags: dict[str, str] | None = None,
        fixed_params: dict[str, Any] | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.sweep = sweep
        self.tags = dict(tags or {})
        # Fixed values every trial shares (the space's base), logged as params
        # too so that a run alone says everything it trained with.
        self.fixed = dict(fixed_params or {})
        self.run_ids: dict[str, str] = {}
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.run_ids:  # a restarted trial keeps its run
            return
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.sweep}-{trial.trial_id}",
            tags={**self.tags, "sweep": self.sweep, "trial_id": trial.trial_id},
        )
        self.run_ids[trial.trial_id] = run.info.run_id
        params = {**self.fixed, **flatten(trial.config, sep="/")}
        batch = [Param(metric_key(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # params per log_batch are capped at 100
            self.client.log_batch(run.info.run_id, params=batch[i : i + 100])

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        values = {k: v for k, v in flatten(result, sep="/").items() if not k.startswith("config/")}
        log_metric_batch(self.client, run_id, values, step, skip=_SKIP)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "FAILED")

    def _end(self, trial, status: str) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        # Tune's files (params.json, result.json, progress.csv, TensorBoard
        # events) sit in the driver's staging folder; checkpoints (the trained
        # weights and codes) go straight to the storage path.
        staging = Path(trial.local_path) if trial.local_path else None
        if staging is not None and staging.is_dir():
            self.client.log_artifacts(run_id, str(staging), artifact_path="trial")
        stored = Path(trial.path) if trial.path and "://" not in trial.path else None
        if stored is not None and stored.is_dir() and stored != staging:
            for checkpoint in sorted(stored.glob("checkpoint_*"))[-1:]:
                self.client.log_artifacts(
                    run_id, str(checkpoint), artifact_path=f"trial/{checkpoint.name}"
                )
        self.client.set_terminated(run_id, status=status)

    def log_sweep_files(self, trial_id: str, folder: str | os.PathLike) -> None:
        """The sweep's report and best config, into the best trial's run."""
        run_id = self.run_ids.get(trial_id)
        if run_id is not None:
            self.client.log_artifacts(run_id, str(folder), artifact_path="sweep")
            self.client.set_tag(run_id, "sweep_best", "true")
