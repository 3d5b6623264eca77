"""Sweep stages of the recommenders: SASRec and H2Rec (sidrec.tuning.stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidrec.tuning._stage import Stage

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


# ----------------------------------------------------------------------------
# H2Rec recommender (models/h2rec.py, models/train/h2rec_loop.py): Eq. 11's
# β, γ, Eq. 7's t and w, and the SID table (its L x K) as a choice of paths
# ----------------------------------------------------------------------------

# H2Rec's own knobs the job exposes as flags (TrainConfig.h2rec, H2REC_KNOBS).
_H2REC_KNOB_FLAGS = {
    "beta": "--beta",
    "gamma": "--gamma",
    "code_threshold": "--code-threshold",
    "window": "--window",
    "tau": "--tau",
    "backbone": "--backbone",
}
# Artifact paths: in a space, relative to the artifact root (or absolute);
# "" = none (sids: the one table under <root>/sids/; embeddings: Xavier init).
_H2REC_PATHS = ("sids", "embeddings")


def _h2rec_preset_config() -> dict[str, Any]:
    """h2rec_beauty()'s H2RecConfig as a dict (built on a 2-item, 2-level toy table)."""
    import numpy as np

    from sidrec.models.h2rec import h2rec_beauty

    return h2rec_beauty(np.zeros((2, 2), dtype=np.int64), [2, 2]).cfg.to_dict()


def _h2rec_defaults() -> dict[str, Any]:
    from sidrec.models.train import H2REC_RECIPE, TrainConfig

    train = {**TrainConfig(root="").to_dict(), **H2REC_RECIPE}
    preset = _h2rec_preset_config()
    values = {k: train[k] for k in _SASREC_TRAIN_FLAGS}
    values.update({k: preset[k] for k in _SASREC_ARCH})
    values.update({k: preset[k] for k in _H2REC_KNOB_FLAGS})
    values.update({k: "" for k in _H2REC_PATHS})
    return values


def _h2rec_split(values: dict[str, Any]):
    """(TrainConfig fields, h2rec(...) arch arguments, H2Rec knobs, paths), defaults filled in."""
    merged = {**_h2rec_defaults(), **values}
    train = {k: merged[k] for k in _SASREC_TRAIN_FLAGS}
    arch = {k: merged[k] for k in _SASREC_ARCH}
    knobs = {k: merged[k] for k in _H2REC_KNOB_FLAGS}
    paths = {k: merged[k] for k in _H2REC_PATHS}
    return train, arch, knobs, paths


def _h2rec_check(values: dict[str, Any]) -> None:
    from sidrec.models.h2rec import H2RecConfig
    from sidrec.models.train import TrainConfig

    train, arch, knobs, _ = _h2rec_split(values)
    # lr, dropout, depth, heads: the checks (and messages) of the SASRec stage.
    _sasrec_check(
        {k: v for k, v in values.items() if k in _SASREC_TRAIN_FLAGS or k in _SASREC_ARCH}
    )
    TrainConfig.from_dict({"root": "", **train, "h2rec": knobs})
    # The config's own checks (β, γ, w >= 0, τ > 0, backbone): t against the
    # levels is checked again per SID table when the sweep starts (Stage.trial).
    levels = max(knobs["code_threshold"], 1)
    H2RecConfig(8, (8,) * levels, **arch, **knobs, loss=train["loss"])


def _h2rec_prepare(root: Path, embeddings: Path | None) -> dict[str, Any]:
    context = _sasrec_prepare(root, None)
    if embeddings is not None:
        raise ValueError(
            "h2rec: give the HID-init embeddings as `--set embeddings=PATH` (or `embeddings:` "
            "in the space's base), so that best_config.yaml carries them to the job"
        )
    tables = sorted((Path(root) / "sids").glob("*.parquet"))
    # Like the tokenizers' one file under embeddings/: the default SID table when
    # the space names none. Several tables and none named: the loop says so.
    context["default_sids"] = str(tables[0].resolve()) if len(tables) == 1 else ""
    return context


def _artifact_path(root: str, text: str, key: str) -> str:
    """`text` (absolute, or relative to the artifact root) as an absolute path that exists."""
    path = Path(text).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise ValueError(f"{key}={text!r}: no such file {path}")
    return str(path.resolve())


def _h2rec_resolve(values: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if not out.get("sids") and ctx.get("default_sids"):
        out["sids"] = ctx["default_sids"]
    for key in _H2REC_PATHS:
        if out.get(key):
            out[key] = _artifact_path(ctx["root"], out[key], key)
    return out


def _h2rec_trial(values: dict[str, Any], ctx: dict[str, Any]):
    from sidrec.data.sids import read_sid_table
    from sidrec.models.h2rec import H2RecConfig
    from sidrec.models.train import H2REC_RECIPE, h2rec_train_loop

    train, arch, knobs, paths = _h2rec_split(_h2rec_resolve(values, ctx))
    if paths["sids"]:
        # A table that does not fit this catalog, or a t above its levels,
        # fails here, on the driver, naming the key (sweep._check_trials_build).
        table = read_sid_table(paths["sids"], num_items=ctx["num_items"])
        H2RecConfig(
            ctx["num_items"], tuple(table.codebook_sizes), **arch, **knobs, loss=train["loss"]
        )
    config = {
        **H2REC_RECIPE,
        **train,
        "root": ctx["root"],
        # Every argument of h2rec(...): the loss goes in too (build_h2rec passes
        # `arch` and the knobs only).
        "arch": {**arch, "loss": train["loss"]},
        "h2rec": knobs,
        "sids": paths["sids"] or None,  # None: the loop names the missing table
        "embeddings": paths["embeddings"] or None,
    }
    return h2rec_train_loop, config


def _h2rec_job_args(values: dict[str, Any]) -> list[str]:
    train, arch, knobs, paths = _h2rec_split(values)
    args = ["--model", "h2rec"]
    for key, flag in {**_SASREC_TRAIN_FLAGS, **_H2REC_KNOB_FLAGS}.items():
        value = {**train, **knobs}[key]
        if value is not None:
            args += [flag, str(value)]
    for key in _H2REC_PATHS:
        if paths[key]:
            args += [f"--{key}", paths[key]]
    return args + ["--arch", json.dumps({**arch, "loss": train["loss"]}, sort_keys=True)]


def h2rec_stage() -> Stage:
    return Stage(
        name="h2rec",
        job="jobs/train_recommender.py",
        description="H2Rec recommender (models/h2rec.py, H2REC_RECIPE + h2rec_beauty() arch)",
        defaults=_h2rec_defaults,
        check=_h2rec_check,
        # SASRec's loop (fit_sequence_model): selection on valid only.
        metric_pattern=r"best_valid/ndcg@10",
        default_metric="best_valid/ndcg@10",
        default_mode="max",
        epochs_key="epochs",
        prepare=_h2rec_prepare,
        trial=_h2rec_trial,
        job_args=_h2rec_job_args,
        resolve=_h2rec_resolve,
    )
