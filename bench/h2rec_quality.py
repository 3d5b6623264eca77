"""H2Rec vs SASRec on Beauty: the same loss (CE), SIDs, recipe and wall-time budget.

    python bench/h2rec_quality.py --artifact-root /tmp/h2rec_bench/beauty \
        --sids /tmp/h2rec_bench/beauty/sids/rqvae-....parquet \
        --embeddings /tmp/h2rec_bench/beauty/embeddings/all-minilm-l6-v2.parquet --budget-s 600

What it runs (figures in docs/RESULTS_h2rec.md): each model's train loop in
this process (`sidrec.models.train`, num_workers 0, no MLflow) with its Beauty
recipe (Adam 1e-3, batch 256, `sasrec_beauty` / `h2rec_beauty`: d 64, 2
layers, history 50, dropout 0.5) and `time_budget_s` = --budget-s of training
+ validation, selection on valid NDCG@10 every --eval-every epochs, then the
test split once with the best weights. Reported: full catalog overall / head /
tail (head = the 20% most interacted items in training), and, separately,
the sampled protocol (`sampled100/`: the target among 100 items the user never
touched, as LLM-ESR and the H2Rec paper's tables).
On a CPU a 10-minute budget ends both runs long before convergence (SASRec
needs ~390 epochs to its best on Beauty): the table compares what each model
reaches in the same time, not converged quality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from pathlib import Path

import torch

from sidrec.data import ensure_ingested
from sidrec.distributed import RunSpec, fit
from sidrec.models.train import (
    H2REC_RECIPE,
    SASREC_RECIPE,
    h2rec_train_loop,
    sasrec_train_loop,
)

RUNS = {"sasrec": (sasrec_train_loop, SASREC_RECIPE), "h2rec": (h2rec_train_loop, H2REC_RECIPE)}
COLUMNS = [
    ("R@10", "recall@10"),
    ("N@10", "ndcg@10"),
    ("R@20", "recall@20"),
    ("N@20", "ndcg@20"),
    ("head N@10", "head/ndcg@10"),
    ("tail N@10", "tail/ndcg@10"),
    ("head R@10", "head/recall@10"),
    ("tail R@10", "tail/recall@10"),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifact-root", required=True)
    p.add_argument("--data-dir", default=os.environ.get("SIDREC_DATA_DIR"))
    p.add_argument("--sids", required=True, help="SID table both runs' H2Rec reads")
    p.add_argument("--embeddings", default=None, help="LLM item embeddings for the HID init")
    p.add_argument("--budget-s", type=float, default=600.0, help="train + valid seconds per model")
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", action="append", choices=sorted(RUNS), help="run only these")
    p.add_argument("--set", action="append", default=[], help="H2Rec knob KEY=VALUE (beta=0.1)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--max-users", type=int, default=None, help="smoke runs only")
    return p.parse_args()


def knobs(pairs: list[str]) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = json.loads(value) if value[:1].isdigit() or value[:1] == "-" else value
    return out


def run(model: str, args: argparse.Namespace, root: Path) -> dict:
    loop, recipe = RUNS[model]
    config = {
        **recipe,
        "root": str(root),
        "loss": "ce",
        "time_budget_s": args.budget_s,
        "eval_every": args.eval_every,
        "sampled_negatives": 100,
        "max_users": args.max_users,
    }
    if model == "h2rec":
        config.update(sids=args.sids, embeddings=args.embeddings, h2rec=knobs(args.set))
    spec = RunSpec(f"bench-{model}-{uuid.uuid4().hex[:8]}", str(root / "bench_runs"))
    t0 = time.perf_counter()
    out = fit(loop, config, spec)
    final = out.history[-1]
    return {
        "model": model,
        "wall_s": time.perf_counter() - t0,
        "epochs_run": final["epochs_run"],
        "best_epoch": final["best_epoch"],
        "train_valid_s": final["elapsed_seconds"],
        "s_per_epoch": sum(m["epoch_seconds"] for m in out.history[:-1])
        / max(1, len(out.history) - 1),
        "test": {k[len("test/") :]: v for k, v in final.items() if k.startswith("test/")},
        "config": {k: v for k, v in config.items() if k != "root"},
    }


def table(results: list[dict], prefix: str) -> str:
    head = "| model | epochs (best) | s/epoch | " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for r in results:
        cells = [f"{r['test'][prefix + key]:.4f}" for _, key in COLUMNS]
        lines.append(
            f"| {r['model']} | {r['epochs_run']} ({r['best_epoch']}) | {r['s_per_epoch']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.artifact_root)
    ensure_ingested("beauty", root, data_dir=args.data_dir, track=False)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = []
    for model in args.only or ["sasrec", "h2rec"]:
        results.append(run(model, args, root))
        if args.out:  # after each model: a crash later keeps what was measured
            Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nstarted {started}, {platform.processor() or platform.machine()}, "
          f"{args.threads} torch threads, budget {args.budget_s:.0f} s per model\n")  # fmt: skip
    print("Full catalog (primary protocol):\n")
    print(table(results, ""))
    print("\nSampled protocol, 100 negatives (`sampled100/`, LLM-ESR / paper tables):\n")
    print(table(results, "sampled100/"))
    print("\nFull catalog, history items removed (`exclude_seen/`):\n")
    print(table(results, "exclude_seen/"))


if __name__ == "__main__":
    main()
