"""What a job prints at its end: the time of each stage, what was built and how good
it is beside two cheap baselines, where it is registered, and how to serve and try it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["StageClock", "baselines", "end_summary"]


class StageClock:
    """Wall time per named stage, logged as each one ends."""

    def __init__(self) -> None:
        from sidrec.progress import watch_log

        watch_log()  # progress lines then keep the silence after a stage line under ~10 s
        self.start = time.monotonic()
        self.stages: list[tuple[str, float]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        import logging

        log = logging.getLogger("sidrec.stage")
        log.info("stage %s: started (%.0f s into the job)", name, self.elapsed())
        t0 = time.monotonic()
        yield
        seconds = time.monotonic() - t0
        self.stages.append((name, seconds))
        log.info("stage %s: done in %.0f s", name, seconds)

    def summary(self) -> str:
        parts = [f"{name} {seconds:.0f} s" for name, seconds in self.stages]
        return f"stages: {', '.join(parts)}; total {self.elapsed() / 60:.1f} min"


def baselines(root: Path, max_users: int | None = None) -> dict[str, dict[str, float]]:
    """Test metrics of MostPopular and item-KNN on the same users as the model."""
    import torch

    from sidrec.data import load_items, load_split, train_item_counts, train_sequences
    from sidrec.eval import head_items
    from sidrec.eval.runner import evaluate_scorer
    from sidrec.models._data import first_users
    from sidrec.models.popularity import ItemKNN, ItemKNNConfig, MostPopular

    num_items = load_items(root).num_rows
    counts = train_item_counts(root, num_items)
    split = first_users(load_split(root, "test"), max_users)
    head = head_items(torch.as_tensor(counts))
    models = {
        "MostPopular": MostPopular(counts),
        "item-KNN": ItemKNN(train_sequences(root), num_items, ItemKNNConfig(neighbours=100)),
    }
    return {
        name: evaluate_scorer(model.score, split, num_items, head_mask=head)
        for name, model in models.items()
    }


def _try_line(root: Path, max_users: int | None) -> str:
    """A curl with two real item ids of the catalog (a test user's latest items)."""
    from sidrec.data import load_items, load_split

    source = load_items(root).column("source_id").to_pylist()
    split = load_split(root, "test")
    history = [source[i] for i in split.history(0)[-2:]] or source[:2]
    body = json.dumps({"history": history, "k": 5, "exclude_seen": True})
    return f"curl -s localhost:8000/v1/recommend -H 'content-type: application/json' -d '{body}'"


def end_summary(root: Path, out: dict[str, Any], clock: StageClock) -> str:
    rec = out["recommender"]
    m = out["tokenizer_metrics"]
    test = rec["test"]
    users = int(test.get("count", 0))
    rows = [("this model", test)] + list(out["baselines"].items())
    lines = [
        "",
        "== what this run built ==",
        f"SIDs      {out['sids']}: collision rate {m.get('collision_rate', float('nan')):.1%}, "
        f"max {m.get('max_items_per_sid')} items per SID",
        f"model     {rec['model']}, {rec['epochs_run']} epochs (best {rec['best_epoch']}), "
        f"{rec['train_seconds']:.0f} s of training",
        f"test      {users} users, full catalog, history items kept (exclude_seen beside it):",
    ]
    for name, metrics in rows:
        lines.append(
            f"          {name:<12} R@10 {metrics['recall@10']:.4f}  N@10 {metrics['ndcg@10']:.4f}"
            f"   | exclude_seen R@10 {metrics['exclude_seen/recall@10']:.4f}"
        )
    uri = rec.get("registered")
    if uri:
        lines += [
            f"registered {uri} (MLflow store sqlite:///{root / 'mlflow.db'})",
            "serve     serve run serve_apps/config.yaml"
            + ("" if uri.endswith("lamia-beauty@candidate") else f"   # set args.model_uri: {uri}"),
            f"try       {_try_line(root, None)}",
        ]
    else:
        lines.append("registered: nothing (--no-mlflow)")
    lines.append(clock.summary())
    return "\n".join(lines)
