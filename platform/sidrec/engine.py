"""The one epoch loop of sidrec: every trainable (the recommenders of
`models/train`, the RQ-VAE / HiD-VAE / RQ-KMeans tokenizers, LAMIA) describes
one epoch as an `EpochTask` and hands it to `run_epochs`, which writes the rest
once:

- resume: `resume_state` reads the run context's latest checkpoint and refuses
  one written by another config (`identity`, all fields but `epochs`);
  `run_epochs` restores the optimizer, scheduler and selection state from it and
  continues at the next epoch; a run whose epochs are all done replays its last
  report (no selection) or tests its best weights again (selection);
- the step: autocast (bf16), backward, gradient clipping, optimizer and
  scheduler steps, the step outputs averaged over the epoch without a host sync
  per step, a progress bar or log line (`sidrec.progress`);
- evaluation every `eval_every` epochs and after the last; with a `Selection`,
  on valid, keeping the best weights, early stopping after `patience` flat
  evaluations, and one test evaluation of the best weights at the end;
- a time budget (training + evaluation across restarts), checked every 10 steps
  so that it bounds the first epoch too;
- one checkpoint per epoch: `identity`, epoch, metrics, optimizer, scheduler,
  selection and the task's own `state_dict()`, saved through the run context.

The run context (`sidrec.distributed.RunContext`) keeps the checkpoint and
carries every report to Ray Train / Tune and the `sidrec.reporting` reporters;
this module imports neither Ray nor MLflow. A sweep sees every epoch's report
as it happens (ASHA's rungs), from the same loop the jobs run.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from sidrec.distributed.train import RunContext, load_state, unwrap
from sidrec.progress import Progress

__all__ = [
    "STATE_FILE",
    "EpochPlan",
    "EpochTask",
    "Selection",
    "autocast",
    "check_identity",
    "resume_state",
    "run_epochs",
]

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"  # the one file of every checkpoint
_BUDGET_EVERY = 10  # steps between time-budget checks (a collective under DDP)


class EpochTask(Protocol):
    """One trainable, an epoch at a time. Its model is built, restored from the
    resumed state (before DDP wraps it: a k-means init must not overwrite it)
    and wrapped by the trainable itself, which then calls `run_epochs`."""

    def batches(self, epoch: int) -> Iterable[Any]:
        """This rank's batches of `epoch` (a list gives the progress bar its total)."""

    def step(self, batch: Any) -> dict[str, Tensor | float]:
        """Forward one batch: {"loss": backpropagated, other: averaged and reported}.
        Without an optimizer (k-means) the step fits, and returns what to report."""

    def evaluate(self, epoch: int, split: str) -> dict[str, Any]:
        """Metrics after `epoch` ("valid"; "test" once at the end with a Selection)."""

    def state_dict(self) -> dict[str, Any]:
        """What the checkpoint keeps besides optimizer, scheduler and selection
        (weights, codes, ...); called on rank 0 when a checkpoint is written."""


@dataclass
class Selection:
    """Select the epoch with the best valid `metric` (higher is better), stop after
    `patience` evaluations without a better one, then test the best weights once."""

    metric: str  # a key of evaluate("valid"): reported as valid/<metric>
    patience: int
    # new_phase(epoch, valid metrics) -> True: a new training phase starts (LM-Rec's
    # L_rip-only phase 2): the early-stopping count restarts, the best weights stay.
    new_phase: Callable[[int, dict[str, float]], bool] | None = None


@dataclass
class EpochPlan:
    """How `run_epochs` trains one task."""

    kind: str  # "tiger", "rqvae", "lamia", ...: progress and log lines
    epochs: int
    identity: dict[str, Any]  # saved in every checkpoint; a resume must match it
    model: torch.nn.Module | None = None  # (DDP-wrapped): train mode, clipping, best weights
    optimizer: torch.optim.Optimizer | None = None  # None: steps fit, no backward (k-means)
    scheduler: Any = None  # stepped after every optimizer step
    epoch_lr: Callable[[int], float] | None = None  # the learning rate set at each epoch start
    grad_clip: float | None = None
    bf16: bool = False  # bf16 autocast around every step
    time_budget_s: float | None = None
    eval_every: int = 1  # evaluate after every N-th epoch and after the last
    selection: Selection | None = None
    train_prefix: str = "train/"  # step outputs are reported as <prefix><key>


@dataclass
class _Track:
    """Selection and time state, saved in every checkpoint (as "selection")."""

    best: float = -math.inf
    best_epoch: int = -1
    bad_evals: int = 0
    stopped: bool = False
    elapsed_s: float = 0.0  # training + evaluation wall time so far, across restarts


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled, else nothing."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def check_identity(
    state: dict[str, Any], identity: dict[str, Any], loose: tuple[str, ...] = ("epochs",)
) -> None:
    """A checkpoint resumes only the run that wrote it: every entry of `identity`
    must equal the checkpoint's (dicts field by field, but for `loose` fields:
    more epochs is fine)."""
    changed: list[str] = []
    named: list[str] = []
    for key, now in identity.items():
        saved = state.get(key)
        if isinstance(now, dict) and isinstance(saved, dict):
            changed += sorted(k for k in now if k not in loose and saved.get(k) != now[k])
        elif saved != now:
            named.append(f"{key} {saved!r}")
    if changed or named:
        scalars = ", ".join(
            f"{k} {state.get(k)!r}" for k, v in identity.items() if not isinstance(v, dict)
        )
        raise ValueError(
            f"the checkpoint to resume was trained with another config (fields {changed}"
            f"{', ' + scalars if scalars else ''}): give this run another name"
        )


def resume_state(reporter: RunContext, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The latest checkpoint's state, checked against `identity`; None on a fresh start.

    Every rank reads it: each run context downloads into a folder of its own
    process (a shared folder was re-downloaded by one rank while another read it:
    "PytorchStreamReader failed reading file" on a restart with 2 workers)."""
    state = load_state(reporter.latest_checkpoint(), STATE_FILE)
    if state is not None:
        check_identity(state, identity)
    return state


def run_epochs(
    task: EpochTask, plan: EpochPlan, reporter: RunContext, state: dict[str, Any] | None
) -> None:
    """Train `task` from `state` (resume_state's) to plan.epochs; report every epoch."""
    track, best, start = _Track(), None, 0
    if state is not None:
        start = state["epoch"] + 1
        if plan.optimizer is not None and state.get("optimizer") is not None:
            plan.optimizer.load_state_dict(state["optimizer"])
        if plan.scheduler is not None:
            plan.scheduler.load_state_dict(state["scheduler"])
        if plan.selection is not None:
            track, best = _Track(**state["selection"]), state["best_model"]
        if plan.selection is None and start >= plan.epochs:
            # Trained already (a re-run after the outputs were lost): hand the
            # last checkpoint back as this run's result.
            reporter.report(
                state["metrics"], save=lambda folder: torch.save(state, folder / STATE_FILE)
            )
            return
        log.info("resuming %s at epoch %d%s", plan.kind, start, _best_text(plan, track))
    last, expected = start - 1, None  # the last epoch trained; its step count
    for epoch in range(start, plan.epochs):
        if track.stopped:
            break
        began = time.perf_counter()
        metrics = _train_epoch(task, plan, reporter, epoch, track.elapsed_s, expected)
        metrics = {"epoch": epoch, "start_epoch": start, **metrics}
        expected = metrics["steps"]
        if (epoch + 1) % plan.eval_every == 0 or epoch + 1 == plan.epochs:
            t1 = time.perf_counter()
            evaluated = task.evaluate(epoch, "valid")
            metrics["eval_seconds"] = time.perf_counter() - t1
            if plan.selection is None:
                metrics.update(evaluated)
            else:
                metrics.update({f"valid/{k}": v for k, v in evaluated.items()})
                best = _select(plan, track, epoch, evaluated, best)
        track.elapsed_s += time.perf_counter() - began
        over_budget = plan.time_budget_s is not None and track.elapsed_s >= plan.time_budget_s
        if plan.selection is not None:
            track.stopped = _agree(track.bad_evals >= plan.selection.patience or over_budget)
            metrics.update(
                {"best_epoch": track.best_epoch, f"best_valid/{plan.selection.metric}": track.best}
            )
        elif plan.time_budget_s is not None:
            track.stopped = _agree(over_budget)
        reporter.report(metrics, save=_saver(task, plan, epoch, metrics, track, best))
        last = epoch
    if plan.selection is not None:
        _test_best(task, plan, reporter, start, last, track, best)


def _train_epoch(
    task: EpochTask,
    plan: EpochPlan,
    reporter: RunContext,
    epoch: int,
    elapsed_s: float,
    expected: int | None,
) -> dict[str, Any]:
    """One pass over task.batches(epoch): {<prefix>key: mean, steps, epoch_seconds}."""
    began = time.perf_counter()
    if plan.model is not None:
        plan.model.train()
    if plan.epoch_lr is not None and plan.optimizer is not None:
        for group in plan.optimizer.param_groups:
            group["lr"] = plan.epoch_lr(epoch)
    batches = task.batches(epoch)
    # A list knows its length; otherwise the last epoch's step count gives an ETA.
    total = len(batches) if hasattr(batches, "__len__") else expected
    sums: dict[str, Any] = {}
    steps = 0
    with Progress(f"{plan.kind} epoch {epoch}", total, "steps", reporter.rank == 0) as progress:
        for batch in batches:
            with autocast(reporter.device, plan.bf16):
                out = task.step(batch)
            if plan.optimizer is not None:
                _optimize(plan, out["loss"])
            for key, value in out.items():
                value = value.detach() if isinstance(value, Tensor) else value
                sums[key] = sums[key] + value if key in sums else value
            steps += 1
            # Callables: a loss read is a host sync, made only when shown.
            progress.update(
                **{k: (lambda k=k, n=steps: float(sums[k]) / n) for k in sums}  # noqa: B023
            )
            if _out_of_time(plan, elapsed_s + time.perf_counter() - began, steps):
                break  # mid-epoch: a budget must bound the first epoch too
    metrics: dict[str, Any] = {
        f"{plan.train_prefix}{k}": float(v) / max(steps, 1) for k, v in sums.items()
    }
    metrics.update(steps=steps, epoch_seconds=time.perf_counter() - began)
    return metrics


def _optimize(plan: EpochPlan, loss: Tensor) -> None:
    optimizer = plan.optimizer
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if plan.grad_clip:
        torch.nn.utils.clip_grad_norm_(plan.model.parameters(), plan.grad_clip)
    optimizer.step()
    if plan.scheduler is not None:
        plan.scheduler.step()


def _select(plan: EpochPlan, track: _Track, epoch: int, valid: dict[str, Any], best):
    """Update the selection after a valid evaluation; the best weights (CPU copy)."""
    selection = plan.selection
    if valid[selection.metric] > track.best:
        track.best, track.best_epoch, track.bad_evals = valid[selection.metric], epoch, 0
        best = _weights(plan)
    else:
        track.bad_evals += 1
    if selection.new_phase is not None and selection.new_phase(epoch, valid):
        track.bad_evals = 0
    return best


def _weights(plan: EpochPlan) -> dict[str, Tensor]:
    net = unwrap(plan.model)
    return copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})


def _test_best(task, plan, reporter, start: int, last: int, track: _Track, best) -> None:
    """Test, once, with the weights of the best valid epoch."""
    if best is None:  # no evaluation ran (epochs=0): the current weights
        best = _weights(plan)
    unwrap(plan.model).load_state_dict(best)
    test = task.evaluate(last, "test")
    final = {
        "epoch": last,
        "start_epoch": start,
        "best_epoch": track.best_epoch,
        "epochs_run": last + 1,
        "elapsed_seconds": track.elapsed_s,
        f"best_valid/{plan.selection.metric}": track.best,
        **{f"test/{k}": v for k, v in test.items()},
    }
    done = {"done": True, "test_metrics": test}
    reporter.report(final, save=_saver(task, plan, last, final, track, best, done))


def _saver(task, plan: EpochPlan, epoch: int, metrics, track: _Track, best, extra=None):
    """save(folder) for the run context: called on rank 0 only, so the state is
    gathered there, when the checkpoint is written."""

    def save(folder: Path) -> None:
        state: dict[str, Any] = {**plan.identity, "epoch": epoch, "metrics": metrics}
        if plan.optimizer is not None:
            state["optimizer"] = plan.optimizer.state_dict()
        if plan.scheduler is not None:
            state["scheduler"] = plan.scheduler.state_dict()
        if plan.selection is not None:
            state.update(selection=asdict(track), best_model=best)
        state.update(task.state_dict())
        state.update(extra or {})
        torch.save(state, folder / STATE_FILE)

    return save


def _best_text(plan: EpochPlan, track: _Track) -> str:
    if plan.selection is None:
        return ""
    return f" (best valid {plan.selection.metric} {track.best:.4f} at epoch {track.best_epoch})"


def _out_of_time(plan: EpochPlan, elapsed_s: float, steps: int) -> bool:
    """The time budget is spent (checked every 10 steps: the ranks must agree, and
    agreeing is a collective)."""
    if plan.time_budget_s is None or steps % _BUDGET_EVERY:
        return False
    return _agree(elapsed_s >= plan.time_budget_s)


def _agree(flag: bool) -> bool:
    """True on every rank if it is True on any (a stopping decision all ranks share)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, bool(flag))
    return any(out)
