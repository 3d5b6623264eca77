"""Sweep stage of SID-GPT (models/sidgpt.py, models/train/sidgpt_loop.py): the
optimizer and warm-up, dropout, depth and width, and the SID table as a path."""

from __future__ import annotations

import json
from typing import Any

from sidrec.tuning._recommender_stages import (
    _SASREC_TRAIN_FLAGS,
    _artifact_path,
    _h2rec_prepare,
)
from sidrec.tuning._stage import Stage

# TrainConfig fields the job exposes as flags (SID-GPT has no --loss: it is the
# SID cross-entropy), plus the warm-up and weight decay of the recipe.
_TRAIN_FLAGS = {
    **{k: v for k, v in _SASREC_TRAIN_FLAGS.items() if k != "loss"},
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
}
# Arguments of models.sidgpt.sidgpt(...), passed to the job as --arch JSON.
_ARCH = ("d_model", "num_layers", "num_heads", "ffn_dim", "dropout", "max_len")


def _defaults() -> dict[str, Any]:
    from sidrec.models.sidgpt import sidgpt_beauty
    from sidrec.models.train import SIDGPT_RECIPE, TrainConfig

    train = {**TrainConfig(root="").to_dict(), **SIDGPT_RECIPE}
    arch = sidgpt_beauty([[0]], [1]).cfg.to_dict()
    values = {k: train[k] for k in _TRAIN_FLAGS}
    values.update({k: arch[k] for k in _ARCH})
    values["sids"] = ""  # "": the one table under <root>/sids/
    return values


def _split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    merged = {**_defaults(), **values}
    return (
        {k: merged[k] for k in _TRAIN_FLAGS},
        {k: merged[k] for k in _ARCH},
        merged["sids"],
    )


def _check(values: dict[str, Any]) -> None:
    from sidrec.models.sidgpt import sidgpt
    from sidrec.models.train import TrainConfig

    train, arch, _ = _split(values)
    checks = [
        (train["lr"] > 0, "lr", "must be > 0"),
        (train["warmup_steps"] >= 0, "warmup_steps", "must be >= 0"),
        (train["weight_decay"] >= 0, "weight_decay", "must be >= 0"),
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
    sidgpt([[0, 1], [1, 0]], [2, 2], **arch)  # the builder's own checks, on a toy table


def _resolve(values: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if not out.get("sids") and ctx.get("default_sids"):
        out["sids"] = ctx["default_sids"]
    if out.get("sids"):
        out["sids"] = _artifact_path(ctx["root"], out["sids"], "sids")
    return out


def _trial(values: dict[str, Any], ctx: dict[str, Any]):
    from sidrec.data.sids import read_sid_table
    from sidrec.models.train import SIDGPT_RECIPE, sidgpt_train_loop

    train, arch, sids = _split(_resolve(values, ctx))
    if sids:  # a table that does not fit the catalog fails here, on the driver
        read_sid_table(sids, num_items=ctx["num_items"])
    config = {**SIDGPT_RECIPE, **train, "root": ctx["root"], "arch": arch, "sids": sids or None}
    return sidgpt_train_loop, config


def _job_args(values: dict[str, Any]) -> list[str]:
    train, arch, sids = _split(values)
    args = ["--model", "sidgpt"]
    for key, flag in _TRAIN_FLAGS.items():
        if train[key] is not None:
            args += [flag, str(train[key])]
    if sids:
        args += ["--sids", sids]
    return args + ["--arch", json.dumps(arch, sort_keys=True)]


def sidgpt_stage() -> Stage:
    return Stage(
        name="sidgpt",
        job="jobs/train_recommender.py",
        description="SID-GPT recommender (models/sidgpt.py, SIDGPT_RECIPE + sidgpt_beauty() arch)",
        defaults=_defaults,
        check=_check,
        metric_pattern=r"best_valid/ndcg@10",
        default_metric="best_valid/ndcg@10",
        default_mode="max",
        epochs_key="epochs",
        prepare=_h2rec_prepare,  # the catalog, the splits and the default SID table
        trial=_trial,
        job_args=_job_args,
        resolve=_resolve,
    )
