"""LAMIA SIDs vs RQ-VAE SIDs on Beauty under one recommender and one budget (issue 7).

    SIDREC_DATA_DIR=/path/to/datasets python bench/lamia_quality.py --artifact-root /tmp/lamia_bench/beauty \
        --embeddings /path/to/embeddings/all-minilm-l6-v2.parquet --rec-budget-s 180 --rec-max-users 4000

Rows (each a SID table of L = 4 codes x K = 256, the paper's Table 4 setting):
- RQ-VAE: `rqvae_tiger()` with levels = 4 on the MiniLM item embeddings
  (computed here when --embeddings is not given), --rqvae-epochs epochs;
- LAMIA: `lamia_minilm_small()` (the job's CPU default; --lamia-preset minilm for more);
- LAMIA w/o L_cl: the same with gamma = 0 (the paper's ablation);
- with --decorrelate W, LAMIA + position CKA W: the same plus W times the
  cross-position CKA term (`losses.position_similarity`, not in the paper).

- with --variants, any of: `nearest` (the paper's nearest-centroid codes, colliding
  items separated by an index token only: spread_collisions off), `no_cl`
  (gamma = 0), `no_predict` (drop_prob = 0: every task reconstructs a field the
  content shows, none predicts a left-out one).

Then one recommender trains on each table, on the same users, selected on valid
and tested once: `--rec-model sidgpt` (the job's default, `sidgpt_beauty`) or
`tiger` (`tiger_cpu`), for --rec-epochs epochs (equal epochs: fair under a
changing machine load) or a --rec-budget-s budget. `--rec-max-users 0` = all
users. Prints a markdown table: SID-table metrics (collision rate, max items per
SID, utilization and perplexity per position), best valid NDCG@10 and test
Recall/NDCG. No MLflow: the bench measures, the jobs register.

    # issue 16: LAMIA against RQ-VAE at convergence, all users, equal epochs
    python bench/lamia_quality.py --artifact-root /tmp/lamia_conv/beauty --rec-model sidgpt \
        --rec-epochs 50 --rec-max-users 0 --variants nearest,no_cl,no_predict --table RQ-VAE=...
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from sidrec.data import ensure_ingested, load_items
from sidrec.models.pipeline import RECIPES, RecommenderRequest, run_recommender
from sidrec.tokenizers import TokenizeRequest, rqvae_tiger, run_tokenizer
from sidrec.tokenizers.lamia import lamia_minilm, lamia_minilm_small, run_lamia
from sidrec.tokenizers.lamia.quantize import position_ami

LAMIA_PRESETS = {"minilm_small": lamia_minilm_small, "minilm": lamia_minilm}
# Ablation rows: name in the table, the config change.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "nearest": ("LAMIA, nearest codes + index token", {"spread_collisions": False}),
    "no_cl": ("LAMIA w/o L_cl", {"gamma": 0.0}),
    "no_predict": ("LAMIA w/o prediction tasks", {"drop_prob": 0.0}),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--data-dir", default=os.environ.get("SIDREC_DATA_DIR"))
    p.add_argument("--artifact-root", required=True)
    p.add_argument("--embeddings", default=None, help="MiniLM item embeddings for RQ-VAE (parquet)")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--rqvae-epochs", type=int, default=20)
    p.add_argument("--lamia-preset", choices=sorted(LAMIA_PRESETS), default="minilm_small")
    p.add_argument("--rec-model", choices=["sidgpt", "tiger"], default="sidgpt")
    p.add_argument("--rec-budget-s", type=float, default=180.0)
    p.add_argument("--rec-max-users", type=int, default=4000)
    p.add_argument("--rec-epochs", type=int, default=None, help="fixed epochs instead of a budget")
    p.add_argument(
        "--rec-eval-every",
        type=int,
        default=1,
        help="epochs between valid evaluations (long codes decode slowly: 5 at L=8)",
    )
    p.add_argument(
        "--decorrelate",
        type=float,
        default=None,
        help="also a LAMIA row with this decorrelate_weight (the position-CKA term, not in the paper)",
    )
    p.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="compare these SID tables instead of training (repeatable)",
    )
    p.add_argument(
        "--variants",
        default="no_cl",
        help="LAMIA rows beside the default one: comma-separated of "
        + ", ".join(VARIANTS)
        + " ('' for none)",
    )
    p.add_argument("--no-train", action="store_true", help="only the --table tables")
    p.add_argument("--no-rqvae", action="store_true", help="no RQ-VAE row trained here")
    p.add_argument("--skip-ablation", action="store_true", help="same as --variants ''")
    p.add_argument("--skip-ablation-rec", action="store_true", help="ablation: SID metrics only")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def _embeddings(root: Path, given: str | None) -> Path:
    target = root / "embeddings" / "all-minilm-l6-v2.parquet"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if given:
        shutil.copy2(given, target)
        return target
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    from sidrec.tokenizers.lamia.encoder import packaged_minilm

    items = load_items(root)
    vectors = (
        SentenceTransformer(packaged_minilm(), device="cpu")
        .encode(items.column("text").to_pylist(), batch_size=128, normalize_embeddings=True)
        .astype(np.float32)
    )
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(np.arange(len(vectors), dtype=np.int32)),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.ravel()), vectors.shape[1]
                ),
            }
        ),
        target,
    )
    return target


def _position_ami(sids: Path) -> str:
    """Mean adjusted mutual information between two positions' codes (0 =
    independent, 1 = the same partition repeated), from the SID table."""
    import numpy as np
    import pyarrow.parquet as pq

    codes = np.stack(pq.read_table(sids, columns=["codes"]).column("codes").to_numpy(False))
    return f"{position_ami(codes):.2f}"


def _sid_row(name: str, metrics: dict[str, Any], seconds: float, levels: int) -> dict[str, Any]:
    util = "/".join(
        f"{metrics.get(f'utilization/level_{i}', float('nan')):.2f}" for i in range(levels)
    )
    perp = "/".join(
        f"{metrics.get(f'perplexity/level_{i}', float('nan')):.0f}" for i in range(levels)
    )
    return {
        "SIDs": name,
        "collision %": f"{100 * metrics['collision_rate']:.1f}",
        "max items/SID": metrics["max_items_per_sid"],
        "utilization per position": util,
        "perplexity per position": perp,
        "tokenizer s": f"{seconds:.0f}",
    }


def _recommend(args, root: Path, sids: Path) -> dict[str, Any]:
    model = args.rec_model
    kind = {"preset": "tiger_cpu", "warmup_steps": 50} if model == "tiger" else {"patience": 10}
    config = {
        **RECIPES[model],
        **kind,
        "max_users": args.rec_max_users or None,
        # --rec-epochs: the same number of epochs for every table (fair under a
        # changing machine load); otherwise the same wall-clock budget.
        "time_budget_s": None if args.rec_epochs else args.rec_budget_s,
        **({"epochs": args.rec_epochs} if args.rec_epochs else {}),
        "batch_size": 256,
        "eval_every": args.rec_eval_every,
        "seed": 0,
    }
    request = RecommenderRequest(
        dataset=args.dataset, root=root, model=model, config=config, sids=str(sids), track=False
    )
    return run_recommender(request)


Table = tuple[str, Path, dict[str, Any], float]


def _given_tables(specs: list[str]) -> list[Table]:
    """--table NAME=PATH: SID tables made earlier (their manifests' metrics)."""
    import json

    tables = []
    for spec in specs:
        name, _, path = spec.partition("=")
        sids = Path(path).resolve()
        manifest = sids.with_suffix(".manifest.json")
        if not name or not sids.is_file() or not manifest.is_file():
            raise SystemExit(
                f"--table {spec!r}: expected NAME=PATH of a sids/<run>.parquet "
                "with its .manifest.json beside it"
            )
        manifest = json.loads(manifest.read_text())
        tables.append((name, sids, manifest["metrics"], float("nan")))
    return tables


def _train_tables(args, root: Path, request) -> list[Table]:
    """RQ-VAE and the LAMIA variants, trained here (up-to-date ones reused)."""
    tables: list[Table] = []
    if not args.no_rqvae:
        emb = _embeddings(root, args.embeddings)
        rq = dataclasses.replace(rqvae_tiger(), levels=args.levels, epochs=args.rqvae_epochs)
        t = time.perf_counter()
        result = run_tokenizer(rq, dataclasses.replace(request, embeddings=emb))
        tables.append(("RQ-VAE", result.sids_path, result.metrics, time.perf_counter() - t))

    lamia = dataclasses.replace(LAMIA_PRESETS[args.lamia_preset](), num_palette=args.levels)
    variants = [("LAMIA", lamia)]
    if args.decorrelate is not None:
        variants.append(
            (
                f"LAMIA + position CKA {args.decorrelate:g}",
                dataclasses.replace(lamia, decorrelate_weight=args.decorrelate),
            )
        )
    chosen = "" if args.skip_ablation else args.variants
    for key in filter(None, (v.strip() for v in chosen.split(","))):
        if key not in VARIANTS:
            raise SystemExit(f"--variants {key!r}: expected some of {', '.join(VARIANTS)}")
        name, change = VARIANTS[key]
        variants.append((name, dataclasses.replace(lamia, **change)))
    for name, cfg in variants:
        t = time.perf_counter()
        result = run_lamia(cfg, request)
        tables.append((name, result.sids_path, result.metrics, time.perf_counter() - t))
        print(_sid_row(name, result.metrics, time.perf_counter() - t, args.levels), flush=True)
    return tables


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.artifact_root).resolve()
    ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=False)
    began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    request = TokenizeRequest(dataset=args.dataset, artifact_root=root, mlflow=False)

    tables = _given_tables(args.table)
    if not args.no_train:
        tables += _train_tables(args, root, request)
    rows = []
    for name, sids, metrics, seconds in tables:
        row = _sid_row(name, metrics, seconds, args.levels)
        row["position AMI"] = _position_ami(sids)
        if not (args.skip_ablation_rec and name.endswith("L_cl")):
            rec = _recommend(args, root, sids)
            test = rec["test"]
            row.update(
                {
                    "R@5": f"{test['recall@5']:.4f}",
                    "R@10": f"{test['recall@10']:.4f}",
                    "N@10": f"{test['ndcg@10']:.4f}",
                    "R@10 exclude_seen": f"{test['exclude_seen/recall@10']:.4f}",
                    "tail R@10": f"{test['tail/recall@10']:.4f}",
                    "valid N@10 (best)": f"{rec['best_valid']:.4f}",
                    "epochs (best)": f"{rec['epochs_run']} ({rec['best_epoch']})",
                }
            )
        rows.append(row)
        print(row, flush=True)

    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(f"\nstarted {began}, ended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "–")) for c in cols) + " |")


if __name__ == "__main__":
    main()
