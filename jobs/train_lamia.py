"""The headline job: LAMIA semantic IDs and a generative recommender on them, end to end.

    python jobs/train_lamia.py --dataset beauty --data-dir /path/to/datasets
    python jobs/train_lamia.py --preset minilm --rec-model tiger --rec-preset tiger_small --rec-full   # a bigger box
    python jobs/train_lamia.py --preset opt --lm-path /models/opt-350m --use-gpu --rec-full   # the paper's backbone
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        -- python jobs/train_lamia.py --data-dir /abs/data --artifact-root /abs/artifacts/beauty

Steps (each skipped when its outputs are up to date):
1. ingest the dataset if <artifact-root>/catalog is missing;
2. train the LAMIA palette model on the item text (content ‖ LaP ‖ LdP ‖
   task blocks, hierarchical mask, dual forward pass, L_gen + γ(L_intra +
   L_inter); `sidrec.tokenizers.lamia`), in this process or on Ray Train
   workers (--num-workers N, DDP, a checkpoint per epoch, resume);
3. compute every item's palette, PCA 64 + K-Means 256 per position, write
   sids/<run>.parquet (+ an index token only where codes coincide) and
   register the tokenizer as `sidrec-tokenizer-lamia-<dataset>`;
4. train a generative recommender on those SIDs (SID-GPT by default:
   `sidrec.models.sidgpt`, the strongest generative kind on Beauty,
   docs/RESULTS_recommender.md), select on valid NDCG@10, test once, bundle,
   register as `sidrec-lamia-<dataset>` with the alias `candidate` (--alias):
   `serve_apps` loads `models:/sidrec-lamia-beauty@candidate`;
5. test MostPopular and item-KNN on the same users, and print what was built,
   how it compares, where it is registered, the `serve run` line and a curl.

LAMIA codes are parallel (no position is coarser than another). The
recommenders embed each code position with its own table (token =
offset[position] + code) and decode position by position under a trie of the
real SIDs, so they assume no coarse -> fine order: any code tuple decodes, and
the trie makes only real items come out.

Defaults, and what they trade for the <= 15 minutes on a 2-core CPU:
  --budget-minutes 15     the whole job; the recommender trains for what the
                          earlier stages leave (minus ~90 s for test, bundle
                          and baselines), with early stopping (patience 10).
  --preset minilm_small   the packaged all-MiniLM-L6-v2 encoder backbone (no
                          decoder-only LLM weights on CPU machines), only its
                          top layer fine-tuned, ONE pass over 4,000 of 12,101
                          Beauty items (codes for all of them): a lightly trained palette.
  --rec-model sidgpt      all users, the full catalog, `SIDGPT_RECIPE`
                          (sidgpt_beauty); --rec-model tiger for TIGER.
  --smoke                 the old small setting (a tiny TIGER on 4,000 users
                          for 240 s): a smoke figure for tests, not a model.
  --rec-full              no time budget, `--rec-preset` (e.g. tiger_small):
                          the setting for a GPU cluster (with --use-gpu).
Other flags: --set FIELD=VALUE (any LamiaConfig field, backbone.FIELD for the
backbone; e.g. --set gamma=0 is the w/o L_cl ablation), --num-workers,
--use-gpu (one GPU per worker; bf16 autocast), --no-mlflow, --force,
--skip-recommender (SIDs only).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from sidrec.cli import (
    DEFAULT_ALIAS,
    DEFAULT_MAX_FAILURES,
    add_common_args,
    add_config_args,
    artifact_root,
    config_epilog,
    config_overrides,
    run_job,
)
from sidrec.data import ensure_ingested
from sidrec.models.pipeline import RecommenderRequest, run_recommender
from sidrec.models.registry import MODELS
from sidrec.summary import StageClock, baselines, end_summary
from sidrec.tokenizers.lamia import (
    lamia_minilm,
    lamia_minilm_small,
    lamia_opt,
    run_lamia,
    with_overrides,
)
from sidrec.tokenizers.pipeline import TokenizeRequest, TokenizeResult

log = logging.getLogger("train_lamia")

PRESETS = {"minilm_small": lamia_minilm_small, "minilm": lamia_minilm}
REC_MODELS = ("sidgpt", "tiger")  # generative kinds of sidrec.models.registry
# Seconds kept back from the budget for what follows training: the test pass,
# the bundle and its registration, the two baselines and the summary.
RESERVE_S = 90.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=config_epilog(lamia_minilm_small(), "LAMIA config fields, --preset minilm_small"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--preset", choices=[*PRESETS, "opt"], default="minilm_small")
    parser.add_argument(
        "--lm-path", default=None, help="--preset opt: local folder of the causal LM"
    )
    add_config_args(parser, "the LamiaConfig (backbone.FIELD for the backbone)")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="0 = this process; N = Ray Train DDP workers"
    )
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES)
    parser.add_argument(
        "--run-name", default=None, help="SID table name (default lamia-<backbone>-<hash>)"
    )
    parser.add_argument(
        "--force", action="store_true", help="retrain the palette model even if up to date"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="no tracking, no registry")
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="registry alias of the recommender")
    parser.add_argument("--skip-recommender", action="store_true")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=15.0,
        help="the whole job: the recommender trains for what the earlier stages leave",
    )
    parser.add_argument(
        "--rec-model", choices=REC_MODELS, default="sidgpt", help="the recommender kind"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the small smoke setting: a tiny TIGER on 4,000 users for 240 s (tests)",
    )
    parser.add_argument(
        "--rec-full", action="store_true", help="all users, no time budget, --rec-preset"
    )
    parser.add_argument("--rec-preset", default=None, help="default: the kind's recipe")
    parser.add_argument("--rec-arch", default=None, help="JSON: every argument of the builder")
    parser.add_argument("--rec-time-budget-s", type=float, default=None)
    parser.add_argument("--rec-max-users", type=int, default=None, help="default: all users")
    parser.add_argument("--rec-epochs", type=int, default=None)
    parser.add_argument("--rec-batch-size", type=int, default=None)
    return parser.parse_args(argv)


def lamia_config(args: argparse.Namespace):
    if args.preset == "opt":
        if not args.lm_path:
            raise SystemExit("--preset opt needs --lm-path: a local folder with the LM's weights")
        cfg = lamia_opt(args.lm_path)
    else:
        cfg = PRESETS[args.preset]()
    return with_overrides(cfg, config_overrides(args))


def recommender_model(args: argparse.Namespace) -> str:
    return "tiger" if args.smoke else args.rec_model


def recommender_config(args: argparse.Namespace, seconds_left: float) -> dict[str, Any]:
    """The kind's recipe over all users, trained for the seconds the job budget leaves;
    --smoke: the tiny TIGER on 4,000 users for 240 s; --rec-full: no budget."""
    model = recommender_model(args)
    config: dict[str, Any] = dict(MODELS[model].recipe)
    if args.smoke:
        config.update(
            preset="tiger_cpu",  # sidrec.models.tiger.tiger_cpu: 2 + 2 layers, d 64
            max_users=4000,
            time_budget_s=240.0,
            batch_size=256,
            warmup_steps=50,
        )
    elif not args.rec_full:
        # Early stopping as in docs/RESULTS_recommender.md; the budget bounds the rest.
        config.update(time_budget_s=max(60.0, seconds_left), patience=10)
    overrides = {
        "preset": args.rec_preset,
        "max_users": args.rec_max_users,
        "time_budget_s": args.rec_time_budget_s,
        "epochs": args.rec_epochs,
        "batch_size": args.rec_batch_size,
    }
    config.update({k: v for k, v in overrides.items() if v is not None})
    if args.rec_full:
        config.pop("time_budget_s", None)
    if args.rec_arch:
        config["arch"] = json.loads(args.rec_arch)
    config["bf16"] = args.use_gpu
    return config


def tokenize(args: argparse.Namespace, root) -> TokenizeResult:
    request = TokenizeRequest(
        dataset=args.dataset,
        artifact_root=root,
        run_name=args.run_name,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        mlflow=not args.no_mlflow,
        alias="candidate",
        force=args.force,
    )
    result = run_lamia(lamia_config(args), request)
    m = result.metrics
    print(
        f"lamia SIDs on {args.dataset}: {result.sids_path} | collision rate "
        f"{m.get('collision_rate', float('nan')):.4f}, max items per SID "
        f"{m.get('max_items_per_sid')}, utilization "
        f"{[round(m[k], 3) for k in sorted(m) if k.startswith('utilization/')]}"
        + (" (up to date, skipped)" if result.skipped else "")
    )
    return result


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.num_workers < 0:
        raise SystemExit("--num-workers must be >= 0")
    if args.budget_minutes <= 0:
        raise SystemExit(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    clock = StageClock()
    root = artifact_root(args)
    with clock.stage("ingest"):
        ensure_ingested(args.dataset, root, data_dir=args.data_dir, track=not args.no_mlflow)
    with clock.stage("LAMIA SIDs"):
        sids = tokenize(args, root)
    out: dict[str, Any] = {"sids": str(sids.sids_path), "tokenizer_metrics": sids.metrics}
    if args.skip_recommender:
        print(clock.summary())
        return out
    model = recommender_model(args)
    seconds_left = args.budget_minutes * 60 - clock.elapsed() - RESERVE_S
    request = RecommenderRequest(
        dataset=args.dataset,
        root=root,
        model=model,
        config=recommender_config(args, seconds_left),
        data_dir=args.data_dir,
        sids=str(sids.sids_path),
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        alias=args.alias,
        name=f"sidrec-lamia-{args.dataset}",
        variant=f"{model}-lamia",
        track=not args.no_mlflow,
        tags={"sids": sids.sids_path.name, "tokenizer": "lamia"},
    )
    with clock.stage(f"recommender ({model})"):
        out["recommender"] = run_recommender(request)
    with clock.stage("baselines (MostPopular, item-KNN)"):
        out["baselines"] = baselines(root, request.config.get("max_users"))
    print(end_summary(root, out, clock))
    return out


if __name__ == "__main__":
    run_job(main, parse_args)
