"""What a sweep can tune: one `Stage` per `stage:` name of a `tune_spaces/*.yaml`.

A stage ties a search space to the trainable the jobs already run, so a
trial trains exactly what `jobs/train_X.py` would with the same values:

    stage = STAGES["hidvae"]
    stage.defaults()                         # every tunable key -> its job default
    stage.check({"unique_margin": 1.5})      # ValueError naming the key
    ctx = stage.prepare(root, embeddings)    # driver side: inputs resolved, checked once
    loop, config = stage.trial(values, ctx)  # sidrec.distributed train_loop + its config
    stage.job_args(values)                   # the job's command line for these values

Stages are plain values built by functions (`hidvae_stage()`, `sasrec_stage()`,
`h2rec_stage()`, `lamia_stage()`), not subclasses.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STAGES",
    "Stage",
    "h2rec_stage",
    "hidvae_stage",
    "lamia_epochwise_loop",
    "lamia_stage",
    "sasrec_stage",
    "stage_for",
]

TrainLoop = Callable[[dict[str, Any], Any], None]
# Config validation without a catalog: large enough that K <= N always holds;
# the real N is checked again when the sweep starts (Stage.prepare).
_ANY_CATALOG = sys.maxsize


@dataclass(frozen=True)
class Stage:
    """One tunable pipeline stage (see the module docstring)."""

    name: str
    job: str  # the entry point the best config is written for
    description: str
    # Every key a space may set, with the job's default (its type is the key's type).
    defaults: Callable[[], dict[str, Any]]
    # Raise ValueError (message starting with the key) when an assignment is invalid.
    check: Callable[[dict[str, Any]], None]
    # A metric every report carries, so ASHA can compare trials at every epoch.
    metric_pattern: str
    default_metric: str
    default_mode: str
    # The key bounding the number of reports: ASHA's max_t.
    epochs_key: str
    # Driver side, once per sweep: resolve and check the inputs (fail before any trial).
    prepare: Callable[[Path, Path | None], dict[str, Any]]
    # Trial side: (values, prepared context) -> (train_loop, its config).
    trial: Callable[[dict[str, Any], dict[str, Any]], tuple[TrainLoop, dict[str, Any]]]
    # The job's arguments that reproduce `values` (the best-config YAML).
    job_args: Callable[[dict[str, Any]], list[str]]
    # (values, prepared context) -> the values as a job outside the sweep needs
    # them: H2Rec's SID table paths, relative to the artifact root in a space,
    # made absolute. Identity for stages whose values are all plain numbers.
    resolve: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = lambda values, ctx: values

    def metric_ok(self, metric: str) -> bool:
        return re.fullmatch(self.metric_pattern, metric) is not None


# ----------------------------------------------------------------------------
# HiD-VAE (tokenizers/hidvae.py): Eq. 5-8 weights, margin, temperature, L, K
# ----------------------------------------------------------------------------

# β_sup of HiD-VAE Eq. 8 weighs both tag losses; the config keeps one weight
# per loss, and this key sets the two together as the paper does.
_HIDVAE_TIED = {"sup_weight": ("align_weight", "pred_weight")}


def _hidvae_defaults() -> dict[str, Any]:
    from sidrec.tokenizers.hidvae import hidvae_beauty

    values = dataclasses.asdict(hidvae_beauty())
    values["hidden_dims"] = tuple(values["hidden_dims"])
    values["sup_weight"] = values["align_weight"]
    return values


def _hidvae_config(values: dict[str, Any], num_items: int = _ANY_CATALOG):
    """HiDVAEConfig from `hidvae_beauty()` with `values` applied, validated for N items."""
    from sidrec.tokenizers.hidvae import hidvae_beauty

    changes = {k: v for k, v in values.items() if k not in _HIDVAE_TIED}
    for key, targets in _HIDVAE_TIED.items():
        if key in values:
            changes.update({t: values[key] for t in targets})
    if "hidden_dims" in changes:
        changes["hidden_dims"] = tuple(changes["hidden_dims"])
    cfg = dataclasses.replace(hidvae_beauty(), **changes)
    cfg.validate(num_items)
    return cfg


def _hidvae_check(values: dict[str, Any]) -> None:
    _hidvae_config(values)


def _hidvae_prepare(root: Path, embeddings: Path | None) -> dict[str, Any]:
    from sidrec.data import load_items
    from sidrec.data.embeddings import load_embeddings
    from sidrec.tokenizers.pipeline import find_embeddings

    num_items = load_items(root).num_rows
    path = find_embeddings(root, embeddings)
    load_embeddings(path, num_items=num_items)  # ids, width, NaN: checked once, here
    items = root / "catalog" / "items.parquet"
    return {
        "embeddings": str(path.resolve()),
        "tags": str(items.resolve()),
        "num_items": num_items,
    }


def _hidvae_trial(values: dict[str, Any], ctx: dict[str, Any]):
    from sidrec.tokenizers.train import train_loop

    cfg = _hidvae_config(values, ctx["num_items"])
    return train_loop, {"tokenizer": cfg, "embeddings": ctx["embeddings"], "tags": ctx["tags"]}


def _hidvae_job_args(values: dict[str, Any]) -> list[str]:
    """`--set FIELD=VALUE` for every field that differs from hidvae_beauty()."""
    from sidrec.tokenizers.hidvae import hidvae_beauty

    cfg, base = dataclasses.asdict(_hidvae_config(values)), dataclasses.asdict(hidvae_beauty())
    args: list[str] = []
    for key in sorted(cfg):
        if cfg[key] != base[key]:
            value = cfg[key]
            text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            args += ["--set", f"{key}={'none' if text is None else text}"]
    return args


def hidvae_stage() -> Stage:
    return Stage(
        name="hidvae",
        job="jobs/train_hidvae.py",
        description="HiD-VAE tokenizer (tokenizers/hidvae.py, hidvae_beauty() defaults)",
        defaults=_hidvae_defaults,
        check=_hidvae_check,
        # The tokenizer has no held-out split: its per-epoch metrics are over
        # the whole catalog (eval/sids.py + tag accuracy/purity, recon).
        metric_pattern=r"collision_rate|recon_loss|max_items_per_sid|num_sids"
        r"|(tag_acc|tag_purity|utilization|perplexity)/level_\d+|prefix_collision/length_\d+",
        default_metric="collision_rate",
        default_mode="min",
        epochs_key="epochs",
        prepare=_hidvae_prepare,
        trial=_hidvae_trial,
        job_args=_hidvae_job_args,
    )


# ----------------------------------------------------------------------------
# SASRec recommender (models/train): optimizer knobs + the sasrec(...) builder's
# ----------------------------------------------------------------------------

# TrainConfig fields that jobs/train_recommender.py exposes as flags; the best
# config must be runnable by the job, so only these are tunable.
_SASREC_TRAIN_FLAGS = {
    "lr": "--lr",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "patience": "--patience",
    "eval_every": "--eval-every",
    "time_budget_s": "--time-budget-s",
    "max_users": "--max-users",
    "seed": "--seed",
    "loss": "--loss",
}
# Arguments of models.sasrec.sasrec(...), passed to the job as --arch JSON.
_SASREC_ARCH = ("d_model", "num_layers", "num_heads", "ffn_dim", "dropout", "max_len")


def _sasrec_defaults() -> dict[str, Any]:
    from sidrec.models.sasrec import sasrec_beauty
    from sidrec.models.train import SASREC_RECIPE, TrainConfig

    train = {**TrainConfig(root="").to_dict(), **SASREC_RECIPE, "loss": "ce"}
    arch = sasrec_beauty(num_items=2).cfg.to_dict()
    values = {k: train[k] for k in _SASREC_TRAIN_FLAGS}
    values.update({k: arch[k] for k in _SASREC_ARCH})
    return values


def _sasrec_split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, sasrec(...) arguments) with defaults filled in."""
    merged = {**_sasrec_defaults(), **values}
    train = {k: merged[k] for k in _SASREC_TRAIN_FLAGS}
    arch = {k: merged[k] for k in _SASREC_ARCH}
    return train, arch


def _sasrec_check(values: dict[str, Any]) -> None:
    from sidrec.models.sasrec import sasrec
    from sidrec.models.train import TrainConfig

    train, arch = _sasrec_split(values)
    checks = [
        (train["lr"] > 0, "lr", "must be > 0"),
        (0 <= arch["dropout"] < 1, "dropout", "is a probability: must be in [0, 1)"),
        (arch["num_layers"] >= 1, "num_layers", "must be >= 1"),
        (arch["num_heads"] >= 1, "num_heads", "must be >= 1"),
        (arch["d_model"] % max(arch["num_heads"], 1) == 0, "d_model", "must divide by num_heads"),
        (train["epochs"] >= 1, "epochs", "must be >= 1"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ValueError(f"{key}={values.get(key, train.get(key, arch.get(key)))!r} {why}")
    TrainConfig.from_dict({"root": "", **train})
    sasrec(8, **arch, loss=train["loss"])  # the builder's own checks, on a toy catalog


def _sasrec_prepare(root: Path, embeddings: Path | None) -> dict[str, Any]:
    from sidrec.data import load_items
    from sidrec.data.catalog import load_split

    num_items = load_items(root).num_rows
    for split in ("train", "valid", "test"):
        load_split(root, split)  # a missing split fails here, named, not in every trial
    return {"root": str(Path(root).resolve()), "num_items": num_items}


def _sasrec_trial(values: dict[str, Any], ctx: dict[str, Any]):
    from sidrec.models.train import SASREC_RECIPE, sasrec_train_loop

    train, arch = _sasrec_split(values)
    # `arch` is every argument of sasrec(...), the loss included.
    arch = {**arch, "loss": train["loss"]}
    return sasrec_train_loop, {**SASREC_RECIPE, **train, "root": ctx["root"], "arch": arch}


def _sasrec_job_args(values: dict[str, Any]) -> list[str]:
    train, arch = _sasrec_split(values)
    args = ["--model", "sasrec"]
    for key, flag in _SASREC_TRAIN_FLAGS.items():
        if train[key] is not None:
            args += [flag, str(train[key])]
    return args + ["--arch", json.dumps({**arch, "loss": train["loss"]}, sort_keys=True)]


def sasrec_stage() -> Stage:
    return Stage(
        name="sasrec",
        job="jobs/train_recommender.py",
        description="SASRec recommender (models/train, SASREC_RECIPE + sasrec_beauty() arch)",
        defaults=_sasrec_defaults,
        check=_sasrec_check,
        # Every report (each epoch and the final test one) carries the best
        # valid value so far; the test split never takes part in selection.
        metric_pattern=r"best_valid/ndcg@10",
        default_metric="best_valid/ndcg@10",
        default_mode="max",
        epochs_key="epochs",
        prepare=_sasrec_prepare,
        trial=_sasrec_trial,
        job_args=_sasrec_job_args,
    )


# `stage:` in a space file -> its Stage. "recommender" is the SASRec stage
# (the name for it); TIGER needs a SID table per trial and is not tunable yet.
STAGES: dict[str, Stage] = {
    "hidvae": hidvae_stage(),
    "sasrec": sasrec_stage(),
    "recommender": sasrec_stage(),
}
# Declared by tune_spaces/*.yaml; each needs a Stage here over its package's
# train loop (LAMIA's package exists, its Stage is the follow-up).
PENDING = {
    "lamia": "a Stage over sidrec.tokenizers.lamia's train loop",
    "h2rec": "sidrec.models.h2rec and a Stage over its train loop",
}


def stage_for(name: str) -> Stage:
    if name in STAGES:
        return STAGES[name]
    if name in PENDING:
        raise KeyError(
            f"stage {name!r} has no trainable yet (needs {PENDING[name]}); "
            f"tunable stages are {sorted(STAGES)}"
        )
    raise KeyError(f"unknown stage {name!r}; tunable stages are {sorted(STAGES)}")
