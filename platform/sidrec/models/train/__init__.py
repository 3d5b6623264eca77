"""Train loops for SASRec, TIGER, SID-GPT, H2Rec and LM-Rec: `train_loop(config, reporter)`, runnable by
`sidrec.distributed.fit` in one process (no Ray) or on N Ray Train workers.

What every loop does (issue 5):
- padding-free, length-bucketed batches (`_data.py`) built from tensors that
  live on the device; the global batch is split over the workers;
- optional bf16 autocast and torch.compile (`bf16`, `compile`: GPU knobs,
  both off by default; both also run on CPU — inductor compiles C++ there —
  and a test exercises them, but bf16 is slower than fp32 on CPUs without AMX);
- model selection on the *valid* split only: NDCG@10 every `eval_every`
  epochs, early stopping after `patience` evaluations without a gain, or when
  the time budget is spent; the *test* split is evaluated once, at the end,
  with the best weights;
- metrics from `sidrec.eval` (full catalog, head/tail, `exclude_seen/`),
  evaluation sharded over the workers and the ranks gathered, so every
  worker sees the same numbers and takes the same stopping decision;
- a checkpoint per epoch holding the model, the optimizer, the selection
  state and the best weights, so a restarted worker group resumes where it
  was (`FailureConfig`), and the last checkpoint is what the job bundles;
- per-epoch and test metrics reported to the run context, which hands them to
  the job's reporters on rank 0 (`sidrec.reporting`: console, MLflow); the
  loops import neither.

    fit(sasrec_train_loop, {"root": ..., "preset": "sasrec_beauty", "loss": "ce"}, RunSpec(...))
    fit(tiger_train_loop, {"root": ..., "sids": ".../sids/x.parquet", "preset": "tiger_small"}, ...)
    fit(h2rec_train_loop, {"root": ..., "sids": ..., "embeddings": ..., "preset": "h2rec_beauty"}, ...)

Modules: config.py (TrainConfig, presets, recipes), _common.py (data, batches,
sharded evaluation, the select-and-test epoch loop), _sequence.py (the body
SASRec and H2Rec share), _generative.py (what TIGER and SID-GPT share), one
*_loop.py per model. `sidrec.models.registry` lists the kinds.
"""

from sidrec.models.train.config import (
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
    TrainConfig,
)
from sidrec.models.train.h2rec_loop import build_h2rec, h2rec_train_loop
from sidrec.models.train.lmrec_loop import build_lmrec, lmrec_train_loop
from sidrec.models.train.sasrec_loop import build_sasrec, sasrec_train_loop
from sidrec.models.train.sidgpt_loop import build_sidgpt, sidgpt_train_loop
from sidrec.models.train.tiger_loop import build_tiger, tiger_train_loop

__all__ = [
    "H2REC_PRESETS",
    "H2REC_RECIPE",
    "LMREC_PRESETS",
    "LMREC_RECIPE",
    "SASREC_PRESETS",
    "SASREC_RECIPE",
    "SIDGPT_PRESETS",
    "SIDGPT_RECIPE",
    "TIGER_PRESETS",
    "TIGER_RECIPE",
    "TrainConfig",
    "build_h2rec",
    "build_lmrec",
    "build_sasrec",
    "build_sidgpt",
    "build_tiger",
    "h2rec_train_loop",
    "lmrec_train_loop",
    "sasrec_train_loop",
    "sidgpt_train_loop",
    "tiger_train_loop",
]
