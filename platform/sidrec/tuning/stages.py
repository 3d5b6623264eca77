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


# ----------------------------------------------------------------------------
# LAMIA tokenizer (tokenizers/lamia): α_intra, α_inter, γ, L, LoRA rank, K
# ----------------------------------------------------------------------------


def _lamia_presets() -> dict[str, Callable[[str], Any]]:
    """jobs/train_lamia.py's --preset names -> (lm_path) -> LamiaConfig."""
    from sidrec.tokenizers.lamia import lamia_minilm, lamia_minilm_small, lamia_opt

    return {
        "minilm_small": lambda lm_path: lamia_minilm_small(),
        "minilm": lambda lm_path: lamia_minilm(),
        "opt": lamia_opt,
    }


# Not tunable from a space: a tuple of names, an LM's config dict, and the
# model path (`lm_path` is the job's --lm-path).
_LAMIA_FIXED = {"task_fields", "backbone"}
_LAMIA_BACKBONE_FIXED = {"model_path", "tokenizer_path", "random_config"}


def _lamia_defaults() -> dict[str, Any]:
    """Every LamiaConfig field, `backbone.FIELD` for the fields of either backbone
    (the default preset's value where it has the field), the preset and lm_path."""
    from sidrec.tokenizers.lamia import lamia_minilm_small, lamia_opt

    cfg = lamia_minilm_small()
    values: dict[str, Any] = {"preset": "minilm_small", "lm_path": ""}
    values.update(
        {
            f.name: getattr(cfg, f.name)
            for f in dataclasses.fields(cfg)
            if f.name not in _LAMIA_FIXED
        }
    )
    for backbone in (lamia_opt("").backbone, cfg.backbone):  # the default preset's win
        for f in dataclasses.fields(backbone):
            if f.name not in _LAMIA_BACKBONE_FIXED:
                values[f"backbone.{f.name}"] = getattr(backbone, f.name)
    return values


def _lamia_config(values: dict[str, Any], num_items: int = _ANY_CATALOG):
    """LamiaConfig of `values["preset"]` with `values` applied, validated for N items."""
    presets = _lamia_presets()
    preset = values.get("preset", "minilm_small")
    if preset not in presets:
        raise ValueError(f"preset={preset!r}: one of {sorted(presets)} (jobs/train_lamia.py)")
    cfg = presets[preset](values.get("lm_path", ""))
    top = {k: v for k, v in values.items() if k not in ("preset", "lm_path") and "." not in k}
    inner = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("backbone.")}
    names = {f.name for f in dataclasses.fields(cfg.backbone)}
    for key in sorted(set(inner) - names):
        raise ValueError(
            f"backbone.{key}: not a field of {type(cfg.backbone).__name__} (preset {preset}); "
            f"its fields: {sorted(names - _LAMIA_BACKBONE_FIXED)}"
        )
    if "lora_rank" in inner and "lora_alpha" not in inner:
        inner["lora_alpha"] = 2 * inner["lora_rank"]  # lamia_opt's alpha = 2 x rank
    cfg = dataclasses.replace(cfg, **top, backbone=dataclasses.replace(cfg.backbone, **inner))
    cfg.validate(num_items)
    return cfg


def _lamia_check(values: dict[str, Any]) -> None:
    _lamia_config(values)


def _lamia_prepare(root: Path, embeddings: Path | None) -> dict[str, Any]:
    from sidrec.data import load_items

    if embeddings is not None:
        raise ValueError("lamia reads the item text, not embeddings: drop --embeddings")
    num_items = load_items(root).num_rows  # checks the catalog's schema, names the file
    items = Path(root) / "catalog" / "items.parquet"
    return {"items": str(items.resolve()), "num_items": num_items}


def _lamia_trial(values: dict[str, Any], ctx: dict[str, Any]):
    if values.get("preset") == "opt" and not values.get("lm_path"):
        raise ValueError("lm_path: preset opt needs a local folder of the LM (--set lm_path=DIR)")
    cfg = _lamia_config(values, ctx["num_items"])
    return lamia_epochwise_loop, {"lamia": cfg, "items": ctx["items"]}


class _KeepLatest:
    """A Reporter that also keeps the latest checkpoint in a local folder, so the
    next `train_loop` call of `lamia_epochwise_loop` resumes from it."""

    def __init__(self, inner) -> None:
        import tempfile

        self.inner = inner
        self.rank, self.world_size, self.device = inner.rank, inner.world_size, inner.device
        self._folder = Path(tempfile.mkdtemp(prefix="sidrec-lamia-trial-"))
        self._latest: Path | None = None

    def prepare_model(self, model):
        return self.inner.prepare_model(model)

    def report(self, metrics: dict[str, float], save=None) -> None:
        import shutil

        if save is None:
            self.inner.report(metrics)
            return
        folder = self._folder / f"epoch-{metrics.get('epoch', 0)}"
        folder.mkdir()
        save(folder)
        if self._latest is not None:
            shutil.rmtree(self._latest, ignore_errors=True)
        self._latest = folder
        self.inner.report(
            metrics, save=lambda out: shutil.copytree(folder, out, dirs_exist_ok=True)
        )

    def latest_checkpoint(self) -> Path | None:
        return self._latest or self.inner.latest_checkpoint()

    def epochs_done(self) -> int:
        """Epochs a restored trial has trained already (0 for a fresh one)."""
        import torch

        from sidrec.tokenizers.train import STATE_FILE

        restored = self.inner.latest_checkpoint()
        if restored is None:
            return 0
        return int(torch.load(restored / STATE_FILE, weights_only=False)["epoch"]) + 1


def lamia_epochwise_loop(config: dict[str, Any], reporter) -> None:
    """LAMIA's `train_loop`, tokenizing after every epoch instead of the last only.

    The tokenizer's loop computes the palettes of all items and quantizes them
    (PCA + K-Means, sid_table_metrics) after its last epoch; a sweep needs the
    SID metrics at every report for ASHA to compare trials at its rungs. So
    epoch e is a `train_loop` run with epochs = e that resumes from run e-1's
    checkpoint (the loop resumes any config that differs in `epochs` only):
    the same per-epoch item order and task draws as one run, plus one
    palettes + K-Means pass per epoch (seconds on a GPU for Beauty's 12k items).
    """
    import shutil

    from sidrec.tokenizers.lamia import train_loop

    cfg = config["lamia"]
    keep = _KeepLatest(reporter)
    try:
        for epochs in range(keep.epochs_done() + 1, cfg.epochs + 1):
            train_loop({**config, "lamia": dataclasses.replace(cfg, epochs=epochs)}, keep)
    finally:
        shutil.rmtree(keep._folder, ignore_errors=True)


def _lamia_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _lamia_job_args(values: dict[str, Any]) -> list[str]:
    """`--preset P [--lm-path DIR] --skip-recommender --set FIELD=VALUE ...` for every
    field that differs from the preset's (jobs/train_lamia.py)."""
    preset = values.get("preset", "minilm_small")
    cfg = dataclasses.asdict(_lamia_config(values))
    base = dataclasses.asdict(_lamia_presets()[preset](values.get("lm_path", "")))
    args = ["--preset", preset]
    if values.get("lm_path"):
        args += ["--lm-path", values["lm_path"]]
    args.append("--skip-recommender")  # the sweep tunes the tokenizer alone
    for key in sorted(k for k in cfg if k != "backbone" and cfg[k] != base[k]):
        args += ["--set", f"{key}={_lamia_text(cfg[key])}"]
    inner, inner_base = cfg["backbone"], base["backbone"]
    for key in sorted(k for k in inner if inner[k] != inner_base[k]):
        args += ["--set", f"backbone.{key}={_lamia_text(inner[key])}"]
    return args


def lamia_stage() -> Stage:
    return Stage(
        name="lamia",
        job="jobs/train_lamia.py",
        description="LAMIA palette tokenizer (tokenizers/lamia, the job's presets)",
        defaults=_lamia_defaults,
        check=_lamia_check,
        # A tokenizer has no recommendation metric and no held-out split: each
        # report carries the SID table's metrics over the whole catalog
        # (eval/sids.py) and the palette's own cosines.
        metric_pattern=r"collision_rate|max_items_per_sid|num_sids"
        r"|(utilization|perplexity)/level_\d+|prefix_collision/length_\d+"
        r"|palette/(intra|inter)_cos",
        default_metric="collision_rate",
        default_mode="min",
        epochs_key="epochs",
        prepare=_lamia_prepare,
        trial=_lamia_trial,
        job_args=_lamia_job_args,
    )


# `stage:` in a space file -> its Stage. "recommender" is the SASRec stage
# (the name for it); TIGER needs a SID table per trial and is not tunable yet.
STAGES: dict[str, Stage] = {
    "hidvae": hidvae_stage(),
    "sasrec": sasrec_stage(),
    "recommender": sasrec_stage(),
    "h2rec": h2rec_stage(),
    "lamia": lamia_stage(),
}
# Stages a space may name before their trainable exists (none left).
PENDING: dict[str, str] = {}


def stage_for(name: str) -> Stage:
    if name in STAGES:
        return STAGES[name]
    if name in PENDING:
        raise KeyError(
            f"stage {name!r} has no trainable yet (needs {PENDING[name]}); "
            f"tunable stages are {sorted(STAGES)}"
        )
    raise KeyError(f"unknown stage {name!r}; tunable stages are {sorted(STAGES)}")
