"""Stage 5, recommend: train a recommender (SASRec, TIGER, SID-GPT, H2Rec), test once at the
best valid epoch, register.

    python jobs/train_recommender.py --model sasrec --loss ce --dataset beauty --data-dir /path/to/datasets
    python jobs/train_recommender.py --model tiger --dataset beauty --sids ~/sidrec-artifacts/beauty/sids/rqkmeans.parquet
    python jobs/train_recommender.py --model sidgpt --dataset beauty --sids ~/sidrec-artifacts/beauty/sids/rqvae.parquet
    python jobs/train_recommender.py --model tiger --preset hidvae_recommender --hierarchy-aware --sids ... --num-workers 4 --use-gpu --bf16
    python jobs/train_recommender.py --model h2rec --loss ce --sids ~/sidrec-artifacts/beauty/sids/rqvae.parquet --embeddings ~/sidrec-artifacts/beauty/embeddings/all-minilm-l6-v2.parquet
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        -- python jobs/train_recommender.py --model sasrec --num-workers 2 --data-dir /abs/data --artifact-root /abs/artifacts/beauty

Under `ray job submit` the workers import `sidrec` from the cluster's Python
(`pip install -e .` in cluster.yaml's setup_commands, as for every job here);
a cluster without it needs `--runtime-env-json '{"py_modules": ["platform/sidrec"]}'`.

Ingests the dataset if needed, trains with `sidrec.models.train` (in this
process with --num-workers 0, else on N Ray Train workers with DDP, a
checkpoint per epoch and a restart from the latest one if a worker dies),
selects the epoch by valid NDCG@10, evaluates the test split once with those
weights (full catalog, head/tail, `exclude_seen/` beside it), logs everything
to MLflow (experiment `sidrec-<dataset>`) and registers the serving bundle
(`sidrec.models.bundle`: weights, config, SID table + trie, item metadata) as
`sidrec-<model>-<dataset>` with an alias, so that `models:/NAME@ALIAS` alone
loads and recommends. Results also go to <artifact-root>/eval/<run>.json.

Options and their trade-offs:
  --model KIND            a kind of sidrec.models.registry (listed below).
                          SASRec ranks the full catalog by dot product (cheap,
                          strong on Beauty); TIGER generates SIDs (needs --sids).
  --model sidgpt          SID-GPT: decoder-only, trained on whole user sequences
                          (one pass per user per epoch), generates the next SID
                          with the same trie beam search (needs --sids; the
                          fastest generative kind on a CPU).
  --model h2rec           H2Rec: SID branch + hash-ID branch, full-catalog scoring
                          like SASRec (needs --sids; --embeddings for the HID init).
  --loss ce|bce           SASRec / H2Rec ranking objective: full softmax (stronger,
                          cost O(N) per position) or one sampled negative (the
                          papers'). Always name it when comparing: it moves R@10 by ~.035.
  --embeddings PATH       H2Rec: LLM item embeddings (embeddings/<encoder>.parquet)
                          that initialise the hash-ID table (Alg. 1); default: Xavier.
  --beta --gamma --code-threshold --window --tau --backbone
                          H2Rec: alignment weight (Eq. 7), granularity weight
                          (Eq. 8), shared code levels t and co-occurrence window w
                          of Eq. 7's positives, temperature, branch encoder
                          (sasrec | gru4rec | bert4rec). Unset = the preset's.
  --sampled-negatives N   SASRec / H2Rec: also report `sampled{N}/` metrics (the
                          target among N negatives, LLM-ESR's protocol; papers
                          use 100). Labelled apart, never the selection metric.
  --preset NAME           sasrec_beauty | tiger_small | tiger_cpu | hidvae_recommender |
                          sidgpt_beauty | sidgpt_small | h2rec_beauty.
  --arch JSON             instead of a preset, every argument of sasrec(...),
                          tiger(...) or sidgpt(...) spelled out (tiny models for tests, sweeps).
  --hierarchy-aware       TIGER, SID-GPT: HiD-VAE SID embeddings (code + level + frozen
                          MiniLM embedding of each code's tag path); turned off,
                          with a warning, when the SID table has no tag text.
  --num-workers N         0 = this process (no Ray; what GPU timings use),
                          N >= 1 = Ray Train DDP workers (gloo on CPU).
  --use-gpu --bf16 --compile   GPU knobs: one GPU per worker, bf16 autocast,
                          torch.compile. All off by default; --bf16 and --compile
                          also run on CPU (inductor emits C++; tested), but on a
                          CPU without AMX bf16 is slower than fp32.
  --epochs --patience --eval-every   upper bound, early stopping (valid
                          evaluations without a better NDCG@10), eval period.
  --time-budget-s S       stop training after S seconds (CPU smoke runs); the
                          result is then budget-limited, not converged.
  --max-users U           only users 0..U-1 (tests, smoke runs; full catalog kept).
  --alias A               registry alias of the new version; the default `latest`
                          (reserved by MLflow as an alias) registers without one,
                          and `models:/NAME/latest` then names the newest version.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sidrec.cli import add_common_args, artifact_root, setup_logging
from sidrec.data import DataError
from sidrec.models.pipeline import RecommenderRequest, run_recommender
from sidrec.models.registry import MODELS

log = logging.getLogger("train_recommender")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        required=True,
        help="; ".join(f"{k.name}: {k.summary}" for k in MODELS.values()),
    )
    parser.add_argument("--loss", choices=("ce", "bce"), default="ce")
    parser.add_argument("--preset", default=None, help="builder name (default: the model's recipe)")
    parser.add_argument(
        "--arch",
        default=None,
        help="JSON: every argument of the generic builder sasrec(...) / tiger(...) "
        "(tiny models for tests, sweeps); replaces --preset",
    )
    parser.add_argument("--sids", default=None, help="TIGER, H2Rec: SID table (sids/<run>.parquet)")
    parser.add_argument("--embeddings", default=None, help="H2Rec: LLM item embeddings")
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--gamma", type=float, default=None)
    parser.add_argument("--code-threshold", type=int, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--tau", type=float, default=None)
    parser.add_argument("--backbone", choices=("sasrec", "gru4rec", "bert4rec"), default=None)
    parser.add_argument("--sampled-negatives", type=int, default=None)
    parser.add_argument("--hierarchy-aware", action="store_true")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None, help="linear lr warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--beam-width", type=int, default=20)
    parser.add_argument("--time-budget-s", type=float, default=None)
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-failures", type=int, default=2)
    parser.add_argument("--alias", default="latest")
    parser.add_argument(
        "--name", default=None, help="registered model (default sidrec-<model>-<dataset>)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="no tracking, no registry")
    return parser.parse_args(argv)


def train_config(args: argparse.Namespace) -> dict[str, Any]:
    """The loop's config: the model's recipe, then what the command line overrides."""
    kind = MODELS[args.model]
    config: dict[str, Any] = {**kind.recipe, "seed": args.seed}
    if args.preset:
        if args.preset not in kind.presets:
            raise SystemExit(
                f"--preset {args.preset}: {args.model} presets are {sorted(kind.presets)}"
            )
        config["preset"] = args.preset
    if args.arch:
        config["arch"] = json.loads(args.arch)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "patience": args.patience,
        "warmup_steps": args.warmup_steps,
        "weight_decay": args.weight_decay,
        "eval_every": args.eval_every,
        "time_budget_s": args.time_budget_s,
        "max_users": args.max_users,
    }
    config.update({k: v for k, v in overrides.items() if v is not None})
    config.update(bf16=args.bf16, compile=args.compile, beam_width=args.beam_width)
    if kind.losses:
        config["loss"] = args.loss
        config["sampled_negatives"] = args.sampled_negatives
    if args.model == "h2rec":
        knobs = {
            "beta": args.beta,
            "gamma": args.gamma,
            "code_threshold": args.code_threshold,
            "window": args.window,
            "tau": args.tau,
            "backbone": args.backbone,
        }
        config["h2rec"] = {k: v for k, v in knobs.items() if v is not None}
        if args.embeddings:  # absolute: Ray workers run elsewhere
            config["embeddings"] = str(Path(args.embeddings).expanduser().resolve())
    return config


def request_from_args(args: argparse.Namespace) -> RecommenderRequest:
    root = artifact_root(args)
    return RecommenderRequest(
        dataset=args.dataset,
        root=root,
        model=args.model,
        config=train_config(args),
        data_dir=args.data_dir,
        sids=args.sids,
        hierarchy_aware=args.hierarchy_aware,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        alias=args.alias,
        name=args.name,
        variant=f"{args.model}-{args.loss}" if MODELS[args.model].losses else args.model,
        track=not args.no_mlflow,
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    if MODELS[args.model].needs_sids and not args.sids:
        raise SystemExit(
            f"--model {args.model} needs --sids PATH: a SID table from a tokenizer job "
            "(jobs/train_rqvae.py, jobs/train_hidvae.py, jobs/train_lamia.py) "
            "under <artifact-root>/sids/"
        )
    try:
        request = request_from_args(args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return run_recommender(request)


if __name__ == "__main__":
    setup_logging()
    try:
        main(parse_args())
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
