"""Stage 5, recommend: train a recommender (SASRec, TIGER, SID-GPT, H2Rec, LM-Rec), test once at the
best valid epoch, register.

    python jobs/train_recommender.py --model sasrec --loss ce --dataset beauty --data-dir /path/to/datasets
    python jobs/train_recommender.py --model tiger --dataset beauty --sids ~/sidrec-artifacts/beauty/sids/rqkmeans.parquet
    python jobs/train_recommender.py --model sidgpt --dataset beauty --sids ~/sidrec-artifacts/beauty/sids/rqvae.parquet
    python jobs/train_recommender.py --model tiger --preset hidvae_recommender --hierarchy-aware --sids ... --num-workers 4 --use-gpu --bf16
    python jobs/train_recommender.py --model lmrec --sids ~/sidrec-artifacts/beauty/sids/rqvae.parquet --set lora_rank=32
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

Config: one typed config per kind (`sidrec.models.train.run_config`; listed at
the end of this help with each field's default and meaning): the kind's recipe
and preset, then `--config FILE.yaml`, then `--set KEY=VALUE` (repeatable),
with the keys tune_spaces/*.yaml sweep (a sweep's best_config.yaml is such a
command line). The flags below are shortcuts for single fields.

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
  --model lmrec           LM-Rec (LAMIA §5.4 v): a pretrained LM (default the
                          packaged MiniLM; --set backbone=facebook/opt-350m or a
                          local path) with LoRA reads and generates SID tokens;
                          L_rip + align_weight * L_align, then L_rip alone
                          (--set align_weight=0, phase1_epochs=3, lora_rank=128...).
  --preset NAME           the architecture the fields start from: sasrec_beauty |
                          tiger_small | tiger_cpu | hidvae_recommender |
                          sidgpt_beauty | sidgpt_small | h2rec_beauty |
                          lmrec_minilm | lmrec_opt350m | lmrec_bert_base.
  --set KEY=VALUE         any field, e.g. --set d_model=128 --set dropout=0.3.
  --config FILE.yaml      field: value lines (a sweep's best config, a recipe).
  --loss ce|bce           SASRec / H2Rec ranking objective: full softmax (stronger,
                          cost O(N) per position) or one sampled negative (the
                          papers'). Always name it when comparing: it moves R@10 by ~.035.
  --sids PATH             TIGER, SID-GPT, H2Rec: the SID table (sids/<run>.parquet).
  --embeddings PATH       H2Rec: LLM item embeddings (embeddings/<encoder>.parquet)
                          that initialise the hash-ID table (Alg. 1); default: Xavier.
  --beta --gamma --code-threshold --window --tau --backbone
                          H2Rec: shortcuts for its fields of the same names.
  --sampled-negatives N   SASRec / H2Rec: also report `sampled{N}/` metrics (the
                          target among N negatives, LLM-ESR's protocol; papers
                          use 100). Labelled apart, never the selection metric.
  --arch JSON             older spelling of several --set at once (every argument
                          of sasrec(...), tiger(...) or sidgpt(...) as JSON).
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
import dataclasses
import json
import logging
from typing import Any

from sidrec.cli import add_common_args, add_config_args, artifact_root, config_overrides, run_job
from sidrec.models.pipeline import RecommenderRequest, run_recommender
from sidrec.models.registry import MODELS, ModelKind
from sidrec.models.train.run_config import RecommenderRun
from sidrec.models.train.run_config import train_config as loop_config
from sidrec.overrides import OverrideError, apply_overrides, describe_config

log = logging.getLogger("train_recommender")

# Flags that are shortcuts for the run config field of the same name (None = not given).
SHORTCUTS = (
    "loss",
    "sids",
    "embeddings",
    "hierarchy_aware",
    "beta",
    "gamma",
    "code_threshold",
    "window",
    "tau",
    "backbone",
    "sampled_negatives",
    "bf16",
    "compile",
    "epochs",
    "batch_size",
    "lr",
    "patience",
    "warmup_steps",
    "weight_decay",
    "eval_every",
    "beam_width",
    "time_budget_s",
    "max_users",
    "seed",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        required=True,
        help="; ".join(f"{k.name}: {k.summary}" for k in MODELS.values()),
    )
    parser.add_argument("--preset", default=None, help="architecture (default: the recipe's)")
    add_config_args(parser, "the kind's run config (fields listed at the end)")
    parser.add_argument("--arch", default=None, help="JSON: several fields at once (--set)")
    parser.add_argument("--loss", choices=("ce", "bce"), default=None)
    parser.add_argument("--sids", default=None, help="TIGER, SID-GPT, H2Rec: the SID table")
    parser.add_argument("--embeddings", default=None, help="H2Rec: LLM item embeddings")
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--gamma", type=float, default=None)
    parser.add_argument("--code-threshold", type=int, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--tau", type=float, default=None)
    parser.add_argument("--backbone", choices=("sasrec", "gru4rec", "bert4rec"), default=None)
    parser.add_argument("--sampled-negatives", type=int, default=None)
    for flag in ("--hierarchy-aware", "--bf16", "--compile"):
        parser.add_argument(flag, action="store_const", const=True, default=None)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--use-gpu", action="store_true")
    for flag in ("--epochs", "--batch-size", "--patience", "--warmup-steps", "--eval-every"):
        parser.add_argument(flag, type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--beam-width", type=int, default=None)
    parser.add_argument("--time-budget-s", type=float, default=None)
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-failures", type=int, default=2)
    parser.add_argument("--alias", default="latest")
    parser.add_argument(
        "--name", default=None, help="registered model (default sidrec-<model>-<dataset>)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="no tracking, no registry")
    return parser.parse_args(argv)


def config_help() -> str:
    """Every field of every kind's run config, with its default and meaning."""
    kinds = list(MODELS.values())
    common = [f.name for f in dataclasses.fields(RecommenderRun)]
    parts = [
        "Run config fields (--set KEY=VALUE, --config FILE.yaml); defaults: the recipe's",
        "and the default preset's. Every kind (shown: sasrec's defaults):",
        describe_config(kinds[0].default_run(), common),
    ]
    for kind in kinds:
        run = kind.default_run()
        own = [f.name for f in dataclasses.fields(run) if f.name not in common]
        parts += [f"--model {kind.name} ({kind.default_preset}):", describe_config(run, own)]
    return "\n".join(parts)


def run_config(args: argparse.Namespace) -> tuple[RecommenderRun, str]:
    """The kind's run config and preset: the recipe with the preset's architecture,
    then --arch, then the shortcut flags (so --loss beats a loss in --arch), then
    --config, then --set."""
    kind = MODELS[args.model]
    preset = args.preset or kind.default_preset
    run = kind.default_run(preset)
    if args.arch:
        try:
            arch = json.loads(args.arch)
        except json.JSONDecodeError as err:
            raise OverrideError(f"--arch: not valid JSON ({err})") from None
        if not isinstance(arch, dict):
            raise OverrideError("--arch: expected a JSON object of field: value")
        run = apply_overrides(run, arch, source="--arch")
    names = {f.name for f in dataclasses.fields(run)}
    for key in SHORTCUTS:
        value, flag = getattr(args, key), "--" + key.replace("_", "-")
        if value is None:
            continue
        if key not in names:
            raise OverrideError(f"{flag}: --model {args.model} has no field {key!r}")
        run = apply_overrides(run, {key: value}, source=flag)
    run = apply_overrides(run, config_overrides(args), source="--config/--set")
    kind.check_run(run)
    return run, preset


def train_config(args: argparse.Namespace) -> dict[str, Any]:
    """The train loop's config (TrainConfig fields) this command line asks for."""
    run, preset = run_config(args)
    return loop_config(run, preset)


def request_from_args(args: argparse.Namespace) -> RecommenderRequest:
    kind: ModelKind = MODELS[args.model]
    run, preset = run_config(args)
    if kind.needs_sids and not run.sids:
        raise SystemExit(
            f"--model {args.model} needs --sids PATH: a SID table from a tokenizer job "
            "(jobs/train_rqvae.py, jobs/train_hidvae.py, jobs/train_lamia.py) "
            "under <artifact-root>/sids/"
        )
    loss = getattr(run, "loss", None)
    root = artifact_root(args)  # first: it also settles args.dataset
    return RecommenderRequest(
        dataset=args.dataset,
        root=root,
        model=args.model,
        config=loop_config(run, preset),
        data_dir=args.data_dir,
        sids=getattr(run, "sids", None) or None,
        hierarchy_aware=getattr(run, "hierarchy_aware", False),
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        alias=args.alias,
        name=args.name,
        variant=f"{args.model}-{loss}" if kind.losses else args.model,
        track=not args.no_mlflow,
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    return run_recommender(request_from_args(args))


if __name__ == "__main__":
    run_job(main, parse_args)
