"""The model registry: one entry per recommender kind, read by everything that
trains, bundles, serves or sweeps a recommender.

A kind is what `jobs/train_recommender.py --model` takes, what a bundle's
`kind` field holds and what the endpoint serves. Its entry says how to build
it (config and model classes, presets, the default recipe), how to train it
(a `train_loop(config, reporter)` for `sidrec.distributed.fit`) and how it
ranks:

- `score`: `model.score(histories) -> [b x N]`, full-catalog scores (SASRec, H2Rec);
- `generate`: the `DecoderStep` protocol (`encode`, `step`, `reorder`) driven by
  the trie-constrained beam search (TIGER, SID-GPT, LM-Rec); the bundle then holds the
  SID table and its trie.

Adding a model: write its module (model + builder, each preset's architecture
as a dict), its train loop and its run config (`models/train/run_config.py`:
the fields `--set` and a sweep space name), then add one `ModelKind` line to
`MODELS` below; the job's `--model` choices and `--help`, the pipeline, the
bundle, the endpoint and the sweep stage (`tuning.recommender_stage`) all read
from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidrec.models.h2rec import H2REC_BEAUTY, H2Rec, H2RecConfig
from sidrec.models.lmrec import LMREC_BERT_BASE, LMREC_MINILM, LMREC_OPT350M, LMRec, LMRecConfig
from sidrec.models.sasrec import SASREC_BEAUTY, SASRec, SASRecConfig
from sidrec.models.sidgpt import SIDGPT_BEAUTY, SIDGPT_SMALL, SidGPT, SidGPTConfig
from sidrec.models.tiger import HIDVAE_RECOMMENDER, TIGER_CPU, TIGER_SMALL, Tiger, TigerConfig
from sidrec.models.train import (
    H2REC_PRESETS,
    H2REC_RECIPE,
    LMREC_PRESETS,
    LMREC_RECIPE,
    SASREC_PRESETS,
    SASREC_RECIPE,
    SIDGPT_PRESETS,
    SIDGPT_RECIPE,
    TIGER_PRESETS,
    TIGER_RECIPE,
    h2rec_train_loop,
    lmrec_train_loop,
    sasrec_train_loop,
    sidgpt_train_loop,
    tiger_train_loop,
)
from sidrec.models.train.run_config import (
    H2RecRun,
    LMRecRun,
    RecommenderRun,
    SASRecRun,
    SidGPTRun,
    TigerRun,
    build_run,
    check_run,
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
    # The typed config a run of this kind is set with (`--set`, `--config`,
    # tune_spaces/), and each preset's architecture as its fields' values.
    run_config: type[RecommenderRun]
    archs: Mapping[str, Mapping[str, Any]]
    losses: tuple[str, ...] = field(default=())  # --loss values it reads; () = none

    def __post_init__(self) -> None:
        if self.ranking not in RANKINGS:
            raise ValueError(f"{self.name}: ranking must be one of {RANKINGS}")
        if self.ranking == "generate" and not self.needs_sids:
            raise ValueError(f"{self.name}: a generative kind decodes SIDs, so it needs them")
        if set(self.archs) != set(self.presets):
            raise ValueError(f"{self.name}: every preset needs its architecture in `archs`")

    @property
    def default_preset(self) -> str:
        return self.recipe["preset"]

    def default_run(self, preset: str | None = None) -> RecommenderRun:
        """The recipe's run with `preset`'s architecture (default: the recipe's preset)."""
        preset = preset or self.default_preset
        if preset not in self.archs:
            raise ValueError(f"--preset {preset}: {self.name} presets are {sorted(self.archs)}")
        return build_run(self.run_config, self.config_cls, self.recipe, self.archs[preset])

    def check_run(self, run: RecommenderRun) -> None:
        """A ValueError naming the field when `run` cannot train (see run_config.check_run)."""
        check_run(run, self.config_cls)


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
            run_config=SASRecRun,
            archs={"sasrec_beauty": SASREC_BEAUTY},
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
            run_config=TigerRun,
            archs={
                "tiger_small": TIGER_SMALL,
                "tiger_cpu": TIGER_CPU,
                "hidvae_recommender": HIDVAE_RECOMMENDER,
            },
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
            run_config=SidGPTRun,
            archs={"sidgpt_beauty": SIDGPT_BEAUTY, "sidgpt_small": SIDGPT_SMALL},
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
            run_config=H2RecRun,
            archs={"h2rec_beauty": H2REC_BEAUTY},
            losses=("ce", "bce"),
        ),
        ModelKind(
            "lmrec",
            "LM-Rec: a pretrained LM (any HF backbone, LoRA) generates the next SID",
            LMRecConfig,
            LMRec,
            lmrec_train_loop,
            LMREC_RECIPE,
            LMREC_PRESETS,
            ranking="generate",
            needs_sids=True,
            run_config=LMRecRun,
            archs={
                "lmrec_minilm": LMREC_MINILM,
                "lmrec_opt350m": LMREC_OPT350M,
                "lmrec_bert_base": LMREC_BERT_BASE,
            },
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The registry entry of a kind; a clear error naming the known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model kind {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]
