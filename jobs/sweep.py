"""Stage 6, sweep: a Ray Tune search over one stage's trainable, from tune_spaces/<stage>.yaml.

    python jobs/sweep.py --space tune_spaces/hidvae_uniqueness.yaml --dataset beauty \
        --set epochs=6 --set hidden_dims=128,64 --set latent_dim=16 --set codebook_size=64
    python jobs/sweep.py --space tune_spaces/sasrec.yaml --dataset beauty --set max_users=2000
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        -- python jobs/sweep.py --space tune_spaces/hidvae.yaml --dataset beauty \\
           --artifact-root /abs/artifacts/beauty --num-workers 2 --use-gpu

Reads what the swept stage reads (HiD-VAE: <artifact-root>/embeddings/ and the
catalog's category paths; SASRec: splits/), ingesting the dataset first if
needed. Writes, under <artifact-root>/sweeps/<name>/: Tune's results (one
folder per trial: params.json, progress.csv, result.json, TensorBoard events,
the last checkpoint) and report/ (sweep_report.html, metric_vs_params.png,
collision_vs_uniqueness.png, learning_curves.png, trials.csv,
best_config.yaml). Every trial is an MLflow run in the experiment
`sidrec-<dataset>-sweep-<stage>` (params, per-epoch metrics, the trial's
files); the best one also holds the report.

Dashboards:
    mlflow ui --backend-store-uri sqlite:///<artifact-root>/mlflow.db   # compare, parallel coordinates
    tensorboard --logdir <artifact-root>/sweeps/<name>                  # pip install tensorboard

Features and their flags:
  --space FILE      tune_spaces/*.yaml: stage, metric, ASHA, base values, what
                    varies (sidrec.tuning.spaces); bad keys/ranges fail at once.
  --config FILE.yaml  base values over the space's (key: value lines, sections
                    for nested keys), e.g. a smaller model for a quick sweep.
  --set KEY=VALUE   override a base value of the space (repeatable, after
                    --config), e.g. fewer epochs for a quick sweep.

Keys: the fields of the swept stage's config, the same names its job's --set
takes; `python jobs/<job>.py --help` lists each with its default and meaning
(listed below per stage).
  --num-samples N   grid repeats / random draws (default: the space's).
  --num-workers N   0 = each trial trains in its own Tune process (best on
                    small CPU boxes); N >= 1 = each trial drives N Ray Train
                    workers (DDP), Train inside Tune with TuneReportCallback.
  --use-gpu         one GPU per trial (N = 0) or per Train worker.
  --max-concurrent  trials at once; default: what the cluster's CPUs/GPUs fit.
  --name NAME       the sweep's folder and MLflow run prefix (default
                    <space>-<random>): a reused name makes Tune resume it.
  --no-ingest       sweep the catalog already under --artifact-root (a custom
                    catalog, or a subset for a quick sweep) instead of ingesting.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sidrec.cli import add_common_args, add_config_args, artifact_root, run_job
from sidrec.data import ensure_ingested
from sidrec.overrides import read_config_file
from sidrec.tuning import SweepRequest, SweepResult, load_space, run_sweep
from sidrec.tuning.spaces import parse_assignments, parse_values
from sidrec.tuning.stages import STAGES

log = logging.getLogger("sweep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Keys per stage (stage: its job; the job's --help gives defaults, meanings):\n"
        + "\n".join(f"  {name}: {stage.job}" for name, stage in STAGES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_args(parser)
    parser.add_argument("--space", type=Path, required=True, help="tune_spaces/<stage>.yaml")
    parser.add_argument("--name", default=None)
    parser.add_argument("--embeddings", type=Path, default=None)
    add_config_args(parser, "the space's base values (keys: the stage's)")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--max-failures", type=int, default=0)
    parser.add_argument(
        "--no-ingest",
        action="store_true",
        help="use the catalog under --artifact-root as is, unchecked (a hand-cut subset catalog)",
    )
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> SweepResult:
    if args.num_workers < 0:
        raise SystemExit("--num-workers must be >= 0")
    space = load_space(args.space)  # fail on a bad space before ingesting anything
    overrides = {}
    if args.config is not None:
        source = f"--config {args.config}"
        overrides.update(parse_values(space, read_config_file(args.config), source))
    overrides.update(parse_assignments(space, args.overrides))
    root = artifact_root(args)
    if not args.no_ingest:
        ensure_ingested(args.dataset, root, data_dir=args.data_dir)
    result = run_sweep(
        SweepRequest(
            space=args.space,
            dataset=args.dataset,
            root=root,
            name=args.name,
            embeddings=args.embeddings,
            overrides=overrides,
            num_samples=args.num_samples,
            num_workers=args.num_workers,
            use_gpu=args.use_gpu,
            cpus_per_worker=args.cpus_per_worker,
            max_concurrent=args.max_concurrent,
            max_failures=args.max_failures,
        )
    )
    shown = [c for c in result.trials.columns if not c.startswith("value/")]
    print(result.trials[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"sweep {result.name}: best trial {result.best['trial_id']} "
        f"{result.best['metric']}={result.best['value']:.4g} {result.best['params']}\n"
        f"  best config: {result.best_config}\n"
        f"  report:      {result.report}\n"
        f"  mlflow ui --backend-store-uri {result.tracking_uri}  (experiment {result.experiment_id})\n"
        f"  tensorboard --logdir {result.path}"
    )
    return result


if __name__ == "__main__":
    run_job(main, parse_args)
