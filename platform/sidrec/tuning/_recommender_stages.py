"""Sweep stages of the recommenders: SASRec, H2Rec, SID-GPT and TIGER (sidrec.tuning.stages).

A recommender stage is its kind's typed run config
(`sidrec.models.train.run_config`, read from `sidrec.models.registry`): the
space's keys are the config's fields, its defaults are the job's
(`kind.default_run()`), a value is checked by the config's own checks, a trial
trains `train_config(run)` with the kind's loop, and the best trial's command
line is `jobs/train_recommender.py --model KIND --set FIELD=VALUE ...`, so the
job and the sweep read the same config the same way.

Artifact paths (`sids`, H2Rec's `embeddings`) are, in a space, absolute or
relative to the artifact root; `sids: ""` is the one table under sids/.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sidrec.tuning._stage import Stage

__all__ = ["h2rec_stage", "recommender_stage", "sasrec_stage", "sidgpt_stage", "tiger_stage"]

_PATHS = ("sids", "embeddings")


def _kind(name: str):
    from sidrec.models.registry import model_kind

    return model_kind(name)


def _run(name: str, values: dict[str, Any]):
    """The kind's default run with `values` applied (typed and checked by the config)."""
    from sidrec.overrides import apply_overrides

    kind = _kind(name)
    run = apply_overrides(kind.default_run(), dict(values), source="space")
    kind.check_run(run)
    if getattr(run, "hierarchy_aware", False):
        raise ValueError(
            "hierarchy_aware=True: a sweep does not encode tag-path texts; "
            "train it with jobs/train_recommender.py --hierarchy-aware"
        )
    return run


def _prepare(root: Path, embeddings: Path | None) -> dict[str, Any]:
    """The catalog size, the three splits, and the default SID table (the one under sids/)."""
    from sidrec.data import load_items
    from sidrec.data.catalog import load_split

    if embeddings is not None:
        raise ValueError(
            "a recommender sweep takes the HID-init embeddings as `--set embeddings=PATH` "
            "(or `embeddings:` in the space's base), so that best_config.yaml carries them"
        )
    num_items = load_items(root).num_rows
    for split in ("train", "valid", "test"):
        load_split(root, split)  # a missing split fails here, named, not in every trial
    tables = sorted((Path(root) / "sids").glob("*.parquet"))
    # Several tables and none named: the loop says so.
    default_sids = str(tables[0].resolve()) if len(tables) == 1 else ""
    return {"root": str(Path(root).resolve()), "num_items": num_items, "default_sids": default_sids}


def _artifact_path(root: str, text: str, key: str) -> str:
    """`text` (absolute, or relative to the artifact root) as an absolute path that exists."""
    path = Path(text).expanduser()
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise ValueError(f"{key}={text!r}: no such file {path}")
    return str(path.resolve())


def _resolver(name: str):
    def resolve(values: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        out = dict(values)
        fields = _field_names(name)
        if "sids" in fields and not out.get("sids") and ctx.get("default_sids"):
            out["sids"] = ctx["default_sids"]
        for key in _PATHS:
            if out.get(key):
                out[key] = _artifact_path(ctx["root"], out[key], key)
        return out

    return resolve


def _field_names(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(_kind(name).run_config)}


def recommender_stage(name: str, description: str) -> Stage:
    """The sweep stage of the recommender kind `name` (see the module docstring)."""
    resolve = _resolver(name)

    def defaults() -> dict[str, Any]:
        return dataclasses.asdict(_kind(name).default_run())

    def check(values: dict[str, Any]) -> None:
        _run(name, values)

    def trial(values: dict[str, Any], ctx: dict[str, Any]):
        from sidrec.data.sids import read_sid_table
        from sidrec.models.train.run_config import train_config

        kind = _kind(name)
        run = _run(name, resolve(values, ctx))
        sids = getattr(run, "sids", "")
        if sids:
            # A table that does not fit this catalog, or H2Rec's t above its
            # levels, fails here, on the driver, naming the key.
            table = read_sid_table(sids, num_items=ctx["num_items"])
            config_cls = kind.config_cls
            real = {"num_items": ctx["num_items"], "codebook_sizes": tuple(table.codebook_sizes)}
            arguments = {**dataclasses.asdict(run), **real, "text_dim": 0}
            known = {f.name for f in dataclasses.fields(config_cls)}
            config_cls(**{k: v for k, v in arguments.items() if k in known})
        config = {**train_config(run, kind.default_preset), "root": ctx["root"]}
        if kind.needs_sids:
            config["sids"] = sids or None  # None: the loop names the missing table
        return kind.train_loop, config

    def job_args(values: dict[str, Any]) -> list[str]:
        """`--model KIND --set FIELD=VALUE` for every field that differs from the job's default."""
        run = dataclasses.asdict(_run(name, values))
        default = defaults()
        args = ["--model", name]
        for key in sorted(run):
            if run[key] != default[key]:
                args += ["--set", f"{key}={_text(run[key])}"]
        return args

    return Stage(
        name=name,
        job="jobs/train_recommender.py",
        description=description,
        defaults=defaults,
        check=check,
        # Every report (each epoch and the final test one) carries the best
        # valid value so far; the test split never takes part in selection.
        metric_pattern=r"best_valid/ndcg@10",
        default_metric="best_valid/ndcg@10",
        default_mode="max",
        epochs_key="epochs",
        prepare=_prepare,
        trial=trial,
        job_args=job_args,
        resolve=resolve,
    )


def _text(value: Any) -> str:
    """A value as `--set` reads it back (sidrec.overrides)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def sasrec_stage() -> Stage:
    return recommender_stage(
        "sasrec", "SASRec recommender (models/sasrec.py: SASREC_RECIPE + sasrec_beauty())"
    )


def h2rec_stage() -> Stage:
    return recommender_stage(
        "h2rec", "H2Rec recommender (models/h2rec.py: H2REC_RECIPE + h2rec_beauty())"
    )


def sidgpt_stage() -> Stage:
    return recommender_stage(
        "sidgpt", "SID-GPT recommender (models/sidgpt.py: SIDGPT_RECIPE + sidgpt_beauty())"
    )


def tiger_stage() -> Stage:
    return recommender_stage(
        "tiger", "TIGER recommender (models/tiger.py: TIGER_RECIPE + tiger_small())"
    )
