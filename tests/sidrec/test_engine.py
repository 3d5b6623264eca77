"""The one epoch loop (sidrec.engine) on a tiny regression task, run by the real
in-process run context (`fit` with num_workers=0): resume, the config check, a
replay of a finished run, selection with early stopping and the time budget."""

from __future__ import annotations

import pytest
import torch

from sidrec.distributed import RunSpec, fit, load_state
from sidrec.engine import EpochPlan, Selection, resume_state, run_epochs

X = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


class _Regression:
    """y = x w by SGD; `scores` (one per valid evaluation) stand in for a valid metric."""

    def __init__(self, net: torch.nn.Linear, scores: list[float] | None):
        self.net, self.scores, self.seen = net, scores, []

    def batches(self, epoch: int):
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(epoch))
        return [order[s : s + 10] for s in range(0, len(X), 10)]

    def step(self, rows):
        loss = torch.nn.functional.mse_loss(self.net(X[rows]), Y[rows])
        return {"loss": loss, "rows": float(len(rows))}

    def evaluate(self, epoch: int, split: str):
        weight = self.net.weight.detach().clone()
        if split == "test":
            return {"weight0": float(weight[0, 0])}
        self.seen.append(float(weight[0, 0]))
        with torch.no_grad():
            mse = float(torch.nn.functional.mse_loss(self.net(X), Y))
        score = self.scores[epoch] if self.scores is not None else -mse
        return {"score": score, "mse": mse}

    def state_dict(self):
        return {"model": self.net.state_dict(), "seen": list(self.seen)}


def regression_loop(config, reporter):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1, bias=False)
    identity = {"learner": "regression", "config": {"lr": config["lr"], "epochs": config["epochs"]}}
    state = resume_state(reporter, identity)
    if state is not None:
        net.load_state_dict(state["model"])
    task = _Regression(net, config.get("scores"))
    selection = Selection("score", config["patience"]) if "patience" in config else None
    plan = EpochPlan(
        kind="regression",
        epochs=config["epochs"],
        identity=identity,
        model=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=config["lr"]),
        time_budget_s=config.get("budget"),
        selection=selection,
    )
    run_epochs(task, plan, reporter, state)


def test_a_run_resumes_after_its_last_epoch_and_replays_when_done(tmp_path):
    run = RunSpec("reg", str(tmp_path))
    first = fit(regression_loop, {"lr": 0.05, "epochs": 2}, run)
    assert [m["epoch"] for m in first.history] == [0, 1]
    assert first.history[1]["train/loss"] < first.history[0]["train/loss"]
    assert first.history[0]["train/rows"] == 10.0 and first.history[0]["steps"] == 20
    assert "mse" in first.history[0] and "eval_seconds" in first.history[0]
    state = load_state(first.checkpoint)
    assert state["learner"] == "regression" and state["epoch"] == 1
    assert {"optimizer", "metrics", "model", "seen"} <= set(state)
    # More epochs: continues after the last checkpoint.
    second = fit(regression_loop, {"lr": 0.05, "epochs": 3}, run)
    assert [(m["epoch"], m["start_epoch"]) for m in second.history] == [(2, 2)]
    # Nothing left to train: the last report comes back, nothing is trained again.
    third = fit(regression_loop, {"lr": 0.05, "epochs": 3}, run)
    assert third.history == [second.history[-1]]


def test_a_checkpoint_only_resumes_the_config_that_wrote_it(tmp_path):
    run = RunSpec("reg", str(tmp_path))
    fit(regression_loop, {"lr": 0.05, "epochs": 1}, run)
    with pytest.raises(ValueError, match=r"another config \(fields \['lr'\], learner"):
        fit(regression_loop, {"lr": 0.1, "epochs": 2}, run)


def test_selection_stops_early_and_tests_the_best_weights_once(tmp_path):
    config = {"lr": 0.05, "epochs": 8, "patience": 2, "scores": [1, 3, 2, 2, 9, 9, 9, 9]}
    out = fit(regression_loop, config, RunSpec("sel", str(tmp_path)))
    epochs, final = out.history[:-1], out.history[-1]
    # Epochs 2 and 3 do not beat epoch 1: patience 2 stops after epoch 3.
    assert [m["epoch"] for m in epochs] == [0, 1, 2, 3]
    assert [m["best_epoch"] for m in epochs] == [0, 1, 1, 1]
    assert all(not any(k.startswith("test/") for k in m) for m in epochs)
    assert final["best_epoch"] == 1 and final["epochs_run"] == 4
    assert final["best_valid/score"] == 3
    state = load_state(out.checkpoint)
    # The test ran on epoch 1's weights, not the last ones.
    assert final["test/weight0"] == pytest.approx(state["seen"][1])
    assert final["test/weight0"] != pytest.approx(state["seen"][3])
    assert state["done"] and state["selection"]["best_epoch"] == 1


def test_a_time_budget_stops_inside_the_first_epoch(tmp_path):
    out = fit(
        regression_loop, {"lr": 0.05, "epochs": 5, "budget": 0.0}, RunSpec("t", str(tmp_path))
    )
    # The budget is checked every 10 steps; a spent budget ends the run.
    assert [(m["epoch"], m["steps"]) for m in out.history] == [(0, 10)]
