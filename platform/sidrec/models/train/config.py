"""Training configuration: `TrainConfig` (one run), the model presets by name,
and the recipes behind the reported figures (docs/RESULTS_recommender.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sidrec.eval.metrics import DEFAULT_KS
from sidrec.models.h2rec import h2rec_beauty
from sidrec.models.lmrec import LMRecConfig, lmrec_bert_base, lmrec_minilm, lmrec_opt350m
from sidrec.models.sasrec import sasrec_beauty
from sidrec.models.sidgpt import sidgpt_beauty, sidgpt_small
from sidrec.models.tiger import hidvae_recommender, tiger_cpu, tiger_small

__all__ = [
    "H2REC_KNOBS",
    "H2REC_PRESETS",
    "H2REC_RECIPE",
    "LMREC_KNOBS",
    "LMREC_LOOP_KNOBS",
    "LMREC_PRESETS",
    "LMREC_RECIPE",
    "LR_SCHEDULES",
    "SASREC_PRESETS",
    "SASREC_RECIPE",
    "SIDGPT_PRESETS",
    "SIDGPT_RECIPE",
    "TIGER_PRESETS",
    "TIGER_RECIPE",
    "TrainConfig",
]

LR_SCHEDULES = ("constant", "cosine")  # TrainConfig.lr_schedule
SASREC_PRESETS = {"sasrec_beauty": sasrec_beauty}
TIGER_PRESETS = {
    "tiger_small": tiger_small,
    "tiger_cpu": tiger_cpu,
    "hidvae_recommender": hidvae_recommender,
}
H2REC_PRESETS = {"h2rec_beauty": h2rec_beauty}
SIDGPT_PRESETS = {"sidgpt_beauty": sidgpt_beauty, "sidgpt_small": sidgpt_small}
# H2Rec fields a run may set over its preset (`TrainConfig.h2rec`); the sweep
# issue tunes the first four.
H2REC_KNOBS = ("beta", "gamma", "code_threshold", "window", "tau", "backbone", "align_items")
LMREC_PRESETS = {
    "lmrec_minilm": lmrec_minilm,
    "lmrec_opt350m": lmrec_opt350m,
    "lmrec_bert_base": lmrec_bert_base,
}
# LM-Rec fields a run may set over its preset (`TrainConfig.lmrec`): the model's
# (every LMRecConfig field but the SID shapes) and the loop's (lmrec_loop.py):
# align_weight = lambda of L_rip + lambda * L_align in phase 1; align_batch items
# per step; phase 2 (L_rip alone) after phase1_epochs, or, when None, once valid
# stops improving for phase1_patience evaluations.
LMREC_LOOP_KNOBS = ("align_weight", "align_batch", "phase1_epochs", "phase1_patience")
LMREC_KNOBS = (
    tuple(f for f in LMRecConfig.__dataclass_fields__ if f not in ("num_items", "codebook_sizes"))
    + LMREC_LOOP_KNOBS
)


@dataclass
class TrainConfig:
    """One training run. Defaults are SASRec's Beauty recipe; `TIGER_RECIPE` overrides."""

    root: str  # artifact root holding catalog/ and splits/ (jobs/ingest.py)
    # Architecture: a preset builder by name, or `arch` = every argument of the
    # generic builder (`sasrec(...)`, `tiger(...)`) written out (tests, sweeps).
    preset: str = "sasrec_beauty"
    arch: dict[str, Any] | None = None
    loss: str = "ce"  # SASRec, H2Rec: "ce" full softmax, "bce" one negative
    sids: str | None = None  # TIGER, H2Rec: the SID table (sids/<run>.parquet)
    # H2Rec: LLM item embeddings (embeddings/<encoder>.parquet) that initialise
    # the HID table (Alg. 1 line 4); None = Xavier, as SASRec.
    embeddings: str | None = None
    # H2Rec: knobs over the preset (`H2REC_KNOBS`: beta, gamma, code_threshold,
    # window, tau, backbone), e.g. {"beta": 0.1, "window": 3}.
    h2rec: dict[str, Any] | None = None
    # LM-Rec: knobs over the preset (`LMREC_KNOBS`), e.g. {"backbone":
    # "facebook/opt-350m", "lora_rank": 128, "align_weight": 0.0}.
    lmrec: dict[str, Any] | None = None
    # TIGER: [V x text_dim] tag-path embeddings (torch.save'd tensor) for
    # hierarchy-aware SID embeddings; None = plain TIGER embeddings.
    tag_text: str | None = None
    hierarchy_aware: bool = False
    epochs: int = 400  # upper bound; early stopping usually ends the run
    batch_size: int = 256  # global: split over the workers
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warmup, then the schedule below
    # After warm-up: "constant", or "cosine" = half a cosine from lr to 0 over
    # `epochs` (set epochs to the intended budget; selection still picks the best
    # valid epoch). The open TIGER recipes decay this way (docs/RESULTS_recommender.md).
    lr_schedule: str = "constant"
    grad_clip: float | None = None
    # Early stopping on valid NDCG@10, counted in evaluations (not epochs).
    patience: int = 20
    eval_every: int = 1
    select_metric: str = "ndcg@10"
    eval_batch_size: int = 512
    beam_width: int = 20  # TIGER: beam >= the largest cutoff (20)
    time_budget_s: float | None = None  # stop training after this much wall time
    max_users: int | None = None  # only users 0..max_users-1 (tests, smoke runs)
    head_fraction: float = 0.2  # head = the 20% most interacted items (docs/ARCHITECTURE.md)
    # Full-catalog models: also report the sampled protocol (`sampled{n}/`: the
    # target among n negatives the user never touched, as LLM-ESR / H2Rec's
    # tables); None = off. Never the selection metric, never the headline.
    sampled_negatives: int | None = None
    seed: int = 0
    bf16: bool = False  # autocast matmuls to bf16 on GPU
    compile: bool = False  # torch.compile the training step's model
    # Unused since the MLflow reporter moved out of the loop (sidrec.reporting);
    # kept so that configs and checkpoints written before still load.
    mlflow_uri: str | None = None
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}; known: {sorted(known)}")
        cfg = cls(**config)
        if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.eval_every < 1 or cfg.patience < 1:
            raise ValueError("batch_size, eval_every and patience must be >= 1, epochs >= 0")
        unknown_knobs = sorted(set(cfg.h2rec or {}) - set(H2REC_KNOBS))
        if unknown_knobs:
            raise ValueError(f"h2rec: unknown keys {unknown_knobs}; known: {list(H2REC_KNOBS)}")
        unknown_knobs = sorted(set(cfg.lmrec or {}) - set(LMREC_KNOBS))
        if unknown_knobs:
            raise ValueError(f"lmrec: unknown keys {unknown_knobs}; known: {list(LMREC_KNOBS)}")
        if cfg.sampled_negatives is not None and cfg.sampled_negatives < 1:
            raise ValueError(f"sampled_negatives must be >= 1 or None, got {cfg.sampled_negatives}")
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {cfg.lr_schedule!r}"
            )
        names = {f"{m}@{k}" for m in ("recall", "ndcg") for k in DEFAULT_KS}
        if cfg.select_metric not in names:
            raise ValueError(
                f"select_metric must be one of {sorted(names)}, got {cfg.select_metric!r}"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# SASRec on Beauty (issue 5): Adam 1e-3, batch 256; ~390 epochs to .0823 R@10 with CE.
SASREC_RECIPE: dict[str, Any] = {
    "preset": "sasrec_beauty",
    "lr": 1e-3,
    "batch_size": 256,
    "epochs": 400,
    "patience": 20,
}
# TIGER (§4.1 trains with batch 256; larger batches keep a GPU busy): AdamW 1e-3
# with a short warmup. Not yet validated for quality (no GPU in the session
# that wrote it): docs/RESULTS_recommender.md.
TIGER_RECIPE: dict[str, Any] = {
    "preset": "tiger_small",
    "lr": 1e-3,
    "batch_size": 1024,
    "weight_decay": 0.01,
    "warmup_steps": 200,
    "grad_clip": 1.0,
    "epochs": 200,
    "patience": 10,
}
# H2Rec on Beauty: SASRec's recipe (same optimiser, batch and selection), so the
# comparison isolates the model. Figures: docs/RESULTS_h2rec.md.
H2REC_RECIPE: dict[str, Any] = {**SASREC_RECIPE, "preset": "h2rec_beauty"}
# SID-GPT on Beauty: SASRec's body and optimizer, so the two differ only in how
# items are named (ids vs SIDs) and scored (dot product vs generated codes).
SIDGPT_RECIPE: dict[str, Any] = {**SASREC_RECIPE, "preset": "sidgpt_beauty"}
# LM-Rec (LAMIA §5.4 v): lr 5e-4, batch 64, early stopping patience 5 on valid
# R@10 (the selection metric for this kind); LAMIA's optimizer is Adam.
# Evaluation batches are small: decoding holds each beam's copy of its user's
# prompt cache for one step (64 users x 20 beams x ~100 tokens x layers).
# Quality at 8 epochs on Beauty: docs/RESULTS_lmrec.md (issue 17).
LMREC_RECIPE: dict[str, Any] = {
    "preset": "lmrec_minilm",
    "lr": 5e-4,
    "batch_size": 64,
    "epochs": 30,
    "patience": 5,
    "select_metric": "recall@10",
    "warmup_steps": 100,
    "grad_clip": 1.0,
    "eval_batch_size": 64,
}
