"""The model registry: one entry per recommender kind, read by everything that
trains, bundles, serves or sweeps a recommender.

A kind is what `jobs/train_recommender.py --model` takes, what a bundle's
`kind` field holds and what the endpoint serves. Its entry says how to build
it (config and model classes, presets, the default recipe), how to train it
(a `train_loop(config, reporter)` for `sidrec.distributed.fit`) and how it
ranks:

- `score`: `model.score(histories) -> [b x N]`, full-catalog scores (SASRec, H2Rec);
- `generate`: the `DecoderStep` protocol (`encode`, `step`, `reorder`) driven by
  the trie-constrained beam search (TIGER, SID-GPT); the bundle then holds the
  SID table and its trie.

Adding a model: write its module (model + builder) and its train loop, then
add one `ModelKind` line to `MODELS` below; the job's `--model` choices, the
pipeline, the bundle, the endpoint and the sweep stage all read from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidrec.models.h2rec import H2Rec, H2RecConfig
from sidrec.models.sasrec import SASRec, SASRecConfig
from sidrec.models.sidgpt import SidGPT, SidGPTConfig
from sidrec.models.tiger import Tiger, TigerConfig
from sidrec.models.train import (
    H2REC_PRESETS,
    H2REC_RECIPE,
    SASREC_PRESETS,
    SASREC_RECIPE,
    SIDGPT_PRESETS,
    SIDGPT_RECIPE,
    TIGER_PRESETS,
    TIGER_RECIPE,
    h2rec_train_loop,
    sasrec_train_loop,
    sidgpt_train_loop,
    tiger_train_loop,
)

__all__ = ["MODELS", "ModelKind", "model_kind"]

RANKINGS = ("score", "generate")


@dataclass(frozen=True)
class ModelKind:
    name: str
    summary: str  # one line for --help and errors
    config_cls: type
    model_cls: type
    train_loop: Callable[[dict[str, Any], Any], None]
    recipe: dict[str, Any]  # the train config's defaults for this kind
    presets: dict[str, Callable[..., Any]]
    ranking: str  # "score" (full catalog) or "generate" (trie beam search)
    needs_sids: bool
    losses: tuple[str, ...] = field(default=())  # --loss values it reads; () = none

    def __post_init__(self) -> None:
        if self.ranking not in RANKINGS:
            raise ValueError(f"{self.name}: ranking must be one of {RANKINGS}")
        if self.ranking == "generate" and not self.needs_sids:
            raise ValueError(f"{self.name}: a generative kind decodes SIDs, so it needs them")


MODELS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "sasrec",
            "SASRec: ids, causal transformer, full-catalog dot products",
            SASRecConfig,
            SASRec,
            sasrec_train_loop,
            SASREC_RECIPE,
            SASREC_PRESETS,
            ranking="score",
            needs_sids=False,
            losses=("ce", "bce"),
        ),
        ModelKind(
            "tiger",
            "TIGER: encoder-decoder that generates the next item's SID",
            TigerConfig,
            Tiger,
            tiger_train_loop,
            TIGER_RECIPE,
            TIGER_PRESETS,
            ranking="generate",
            needs_sids=True,
        ),
        ModelKind(
            "sidgpt",
            "SID-GPT: decoder-only, whole sequences, generates the next SID",
            SidGPTConfig,
            SidGPT,
            sidgpt_train_loop,
            SIDGPT_RECIPE,
            SIDGPT_PRESETS,
            ranking="generate",
            needs_sids=True,
        ),
        ModelKind(
            "h2rec",
            "H2Rec: SID + hash-ID branches, full-catalog scores",
            H2RecConfig,
            H2Rec,
            h2rec_train_loop,
            H2REC_RECIPE,
            H2REC_PRESETS,
            ranking="score",
            needs_sids=True,
            losses=("ce", "bce"),
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The registry entry of a kind; a clear error naming the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model kind {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]
