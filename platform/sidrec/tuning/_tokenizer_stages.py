"""Sweep stages of the SID tokenizers: HiD-VAE and LAMIA (sidrec.tuning.stages)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidrec.tuning._stage import ANY_CATALOG, Stage

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


def _hidvae_config(values: dict[str, Any], num_items: int = ANY_CATALOG):
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
    """`--preset paper` (the base the sweep starts from) and `--set FIELD=VALUE`
    for every field that differs from hidvae_beauty()."""
    from sidrec.tokenizers.hidvae import hidvae_beauty

    cfg, base = dataclasses.asdict(_hidvae_config(values)), dataclasses.asdict(hidvae_beauty())
    args: list[str] = ["--preset", "paper"]
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


def _lamia_config(values: dict[str, Any], num_items: int = ANY_CATALOG):
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
    from sidrec.tokenizers.lamia import train_loop

    cfg = _lamia_config(values, ctx["num_items"])
    # The loop tokenizes after its last epoch only; ASHA compares trials on the
    # SID metrics at its rungs, so a trial tokenizes after every epoch (one
    # palettes + PCA + K-Means pass each: seconds on a GPU for Beauty's 12k items).
    return train_loop, {"lamia": cfg, "items": ctx["items"], "tokenize_every": 1}


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
        # (eval/sids.py), the palette's own cosines and CKA, and how much the
        # positions' codes repeat each other (position_ami).
        metric_pattern=r"collision_rate|max_items_per_sid|num_sids|position_ami"
        r"|(utilization|perplexity)/level_\d+|prefix_collision/length_\d+"
        r"|palette/(intra_cos|inter_cos|position_cka)",
        default_metric="collision_rate",
        default_mode="min",
        epochs_key="epochs",
        prepare=_lamia_prepare,
        trial=_lamia_trial,
        job_args=_lamia_job_args,
    )
