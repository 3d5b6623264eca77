"""Is the trie beam wide enough? A saved generative bundle's valid metrics at several beam widths.

    PYTHONPATH=platform python bench/beam_width.py --artifact-root ~/sidrec-artifacts/beauty \\
        --bundle ~/sidrec-artifacts/beauty/recommender/<run>/bundle --widths 20,50,100

Generative models (TIGER, SID-GPT, LM-Rec) rank by trie-constrained beam search,
beam 20 in every reported run: an approximation of ranking the whole catalog
by log p(item). A wider beam can only find items of higher joint probability
that a narrow one pruned at an early level; if the metrics do not move, the
beam loses nothing. Reads the valid split only: a width, like an epoch, is
chosen on valid (the test split is never read here). Prints one row per width:
R@5, R@10, N@5, N@10, tail R@10 and the pass's seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sidrec.distributed.train import LocalReporter
from sidrec.models.bundle import load_bundle
from sidrec.models.train._common import evaluate_split, load_data
from sidrec.models.train._generative import beam_protocols, beam_ranker
from sidrec.models.train.config import TrainConfig

COLUMNS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "tail/recall@10")


def _max_history(model: torch.nn.Module) -> int:
    cfg = model.cfg
    return cfg.max_len if hasattr(cfg, "max_len") else cfg.max_history


def load_for_valid(bundle: Path, root: Path, max_users: int | None = None):
    """(the bundle's Recommender, the TrainData under root): refused by name when the
    bundle was trained on another catalog. bench/sid_levels.py reads bundles alike."""
    rec = load_bundle(bundle)
    data = load_data(TrainConfig(root=str(root), max_users=max_users))
    if data.num_items != rec.num_items:
        raise ValueError(
            f"{bundle}: {rec.num_items} items, the catalog under {root} has {data.num_items}"
        )
    return rec, data


def valid_at_widths(
    bundle: Path, root: Path, widths: list[int], max_users: int | None = None
) -> list[dict[str, float]]:
    """One dict per width: the valid metrics (primary protocol) and `seconds`."""
    rec, data = load_for_valid(bundle, root, max_users)
    if rec.trie is None:
        raise ValueError(f"{bundle}: a {rec.kind} bundle ranks every item; no beam to widen")
    rows = []
    # The bundle loads on the CPU, so the evaluation runs there too; the reporter's
    # checkpoint folder is never written, and goes with the run.
    with tempfile.TemporaryDirectory(prefix="beam-width-") as scratch:
        reporter = LocalReporter(scratch, device=torch.device("cpu"), reporters=[])
        for width in widths:
            cfg = TrainConfig(root=str(root), max_users=max_users, beam_width=width)
            rank_batch = beam_ranker(lambda: rec.model, rec.trie, width, rec.num_items)
            start = time.perf_counter()
            metrics = evaluate_split(
                rec.model, data.valid, _max_history(rec.model), rank_batch, data,
                beam_protocols(cfg), cfg, reporter,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            rows.append({k: metrics[k] for k in COLUMNS} | {"seconds": seconds})
    return rows


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--widths {text}: comma-separated integers") from None
    if min(widths) < 10:
        raise argparse.ArgumentTypeError(f"--widths {text}: each width >= 10 (R@10 needs 10)")
    return widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-root", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--widths", type=_widths, default=[20, 50, 100])
    parser.add_argument("--max-users", type=int, default=None)
    args = parser.parse_args()
    rows = valid_at_widths(args.bundle, args.artifact_root, args.widths, args.max_users)
    print("| beam | " + " | ".join(f"valid {c}" for c in COLUMNS) + " | seconds |")
    print("|---:|" + "---:|" * (len(COLUMNS) + 1))
    for width, row in zip(args.widths, rows, strict=True):
        cells = " | ".join(f"{row[c]:.4f}" for c in COLUMNS)
        print(f"| {width} | {cells} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
