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
`h2rec_stage()`, `sidgpt_stage()`, `tiger_stage()`, `lamia_stage()`), not subclasses; the tokenizer stages live in
`_tokenizer_stages.py`, the recommender stages in `_recommender_stages.py`.
"""

from __future__ import annotations

from sidrec.tuning._recommender_stages import (
    h2rec_stage,
    sasrec_stage,
    sidgpt_stage,
    tiger_stage,
)
from sidrec.tuning._stage import Stage
from sidrec.tuning._tokenizer_stages import hidvae_stage, lamia_stage

__all__ = [
    "STAGES",
    "Stage",
    "h2rec_stage",
    "hidvae_stage",
    "lamia_stage",
    "sasrec_stage",
    "sidgpt_stage",
    "stage_for",
    "tiger_stage",
]


# `stage:` in a space file -> its Stage. "recommender" is the SASRec stage
# (the name for it). The recommender stages are one factory over the
# registry's run configs (`_recommender_stages.py`); LM-Rec has none yet.
STAGES: dict[str, Stage] = {
    "hidvae": hidvae_stage(),
    "sasrec": sasrec_stage(),
    "recommender": sasrec_stage(),
    "h2rec": h2rec_stage(),
    "sidgpt": sidgpt_stage(),
    "tiger": tiger_stage(),
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
