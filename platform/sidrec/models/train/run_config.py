"""The typed config of one recommender run, one class per model kind: what
`jobs/train_recommender.py --set KEY=VALUE` / `--config FILE.yaml` and the
recommender spaces in `tune_spaces/*.yaml` name, with the same keys.

    kind = model_kind("sasrec")
    run = kind.default_run()                       # SASREC_RECIPE + sasrec_beauty()'s architecture
    run = apply_overrides(run, ["lr=3e-4", "dropout=0.3"])
    check_run(run, kind.config_cls)                # a ValueError naming the field
    config = train_config(run, "sasrec_beauty")    # the train loop's config (TrainConfig fields)

One flat namespace per kind: the training knobs (`TrainConfig`'s), the
architecture (the arguments of the kind's builder: `sasrec(...)`, `tiger(...)`,
...), the kind's own loss knobs (H2Rec's Eq. 7, 8, 11; LM-Rec's phases) and its inputs (`sids`,
`embeddings`). The defaults come from where each is written once (`build_run`):
`TrainConfig`, the model config's own defaults, the kind's recipe
(`SASREC_RECIPE`, ...) and the preset's architecture (`SASREC_BEAUTY`, ...);
nothing is built to read them. The train loops still take `TrainConfig`
(`train_config` below writes it), so the numerics of a run do not depend on
how its config was spelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sidrec.models.train.config import TrainConfig

__all__ = [
    "H2RecRun",
    "LMRecRun",
    "RecommenderRun",
    "SASRecRun",
    "SidGPTRun",
    "TigerRun",
    "build_run",
    "check_run",
    "train_config",
]


@dataclass(kw_only=True)
class RecommenderRun:
    """What every kind's run sets: optimisation, selection, budget, precision."""

    epochs: int  # upper bound; early stopping (patience) usually ends the run
    batch_size: int  # global: split over the workers
    lr: float  # the learning rate after warm-up
    # AdamW's decoupled weight decay (every kind; SASRec's and H2Rec's recipes keep 0,
    # where AdamW is §4.2's Adam). Before 2026-12-05 SASRec and H2Rec ignored it.
    weight_decay: float
    warmup_steps: int  # linear warm-up from 0 over this many steps, then lr_schedule
    lr_schedule: str  # after warm-up: constant, or cosine (lr to 0 at the last of `epochs`)
    grad_clip: float | None  # max global grad norm; none = no clipping
    patience: int  # early stopping: valid evaluations in a row without a better select_metric
    eval_every: int  # epochs between two valid evaluations
    # the valid metric that picks the epoch tested once (ndcg@10, recall@20, ...)
    select_metric: str
    eval_batch_size: int  # users ranked at once in an evaluation
    # stop training after this much wall time (then budget-limited, not converged)
    time_budget_s: float | None
    max_users: int | None  # only users 0..max_users-1 (tests, smoke runs); the catalog stays whole
    head_fraction: float  # head/tail metrics: the head is this share of the most interacted items
    seed: int  # torch seed: initialisation, batch order, dropout
    bf16: bool  # bf16 autocast; on a CPU without AMX slower than fp32 (runs, tested)
    compile: bool  # torch.compile the training step's model (inductor; C++ on a CPU, tested)

    # The fields that are arguments of the kind's builder, and the kind's own knobs
    # (`TrainConfig.<KNOBS_KEY>`: H2Rec's, LM-Rec's): train_config() routes them.
    ARCH: ClassVar[tuple[str, ...]] = ()
    KNOBS: ClassVar[tuple[str, ...]] = ()
    KNOBS_KEY: ClassVar[str] = "h2rec"


@dataclass(kw_only=True)
class SASRecRun(RecommenderRun):
    """SASRec (models/sasrec.py): ids, causal transformer, full-catalog dot products."""

    # ce = full softmax over the catalog (stronger, O(N) per position); bce = one sampled negative
    # (the paper's)
    loss: str
    # also report sampled{N}/ metrics (the target among N negatives; LLM-ESR's protocol), never for
    # selection
    sampled_negatives: int | None
    d_model: int  # item embedding and hidden width
    num_layers: int  # self-attention blocks
    num_heads: int  # attention heads; d_model must divide by it
    ffn_dim: int  # width of each block's feed-forward layer
    dropout: float  # on embeddings, attention and FFN (0.5 suits sparse Beauty)
    max_len: int  # most recent items read (and trained on) per user
    # with ce: weight of the unlikelihood of the user's own history items (0 = off; suits a log
    # where items do not repeat, e.g. Beauty)
    seen_penalty: float

    ARCH: ClassVar[tuple[str, ...]] = (
        "d_model",
        "num_layers",
        "num_heads",
        "ffn_dim",
        "dropout",
        "max_len",
        "seen_penalty",
    )


@dataclass(kw_only=True)
class H2RecRun(SASRecRun):
    """H2Rec (models/h2rec.py): a SID branch and a hash-ID branch, each SASRec's
    encoder (the fields above), with its Eq. 11 losses; full-catalog scores."""

    sids: str  # the SID table (sids/<run>.parquet; --sids)
    embeddings: str  # LLM item embeddings initialising the hash-ID table (Alg. 1); "" = Xavier
    backbone: str  # each branch's encoder: sasrec | gru4rec | bert4rec
    beta: float  # β, Eq. 11: weight of the code-guided alignment loss (Eq. 7)
    gamma: float  # γ, Eq. 11: weight of the masked sequence granularity loss (Eq. 8)
    code_threshold: int  # t, Eq. 7: items sharing >= t code levels are positives (<= the levels)
    window: int  # w, Eq. 7: items within w positions in a training sequence are positives
    tau: float  # temperature of both contrastive losses
    align_items: int  # at most this many distinct targets per alignment batch

    KNOBS: ClassVar[tuple[str, ...]] = (
        "backbone",
        "beta",
        "gamma",
        "code_threshold",
        "window",
        "tau",
        "align_items",
    )


@dataclass(kw_only=True)
class TigerRun(RecommenderRun):
    """TIGER (models/tiger.py): an encoder-decoder that generates the next item's SID."""

    sids: str  # the SID table (sids/<run>.parquet; --sids)
    # HiD-VAE SID embeddings from each code's tag path (needs tag text in the table)
    hierarchy_aware: bool
    beam_width: int  # trie-constrained beam search width in evaluation; >= the largest cutoff (20)
    num_encoder_layers: int  # encoder blocks over the history's SIDs
    num_decoder_layers: int  # decoder blocks generating the next SID
    d_model: int  # model width
    num_heads: int  # attention heads
    # per head; num_heads x head_dim need not equal d_model (TIGER §4.1: 6 x 64, d 128)
    head_dim: int
    ffn_dim: int  # feed-forward width
    dropout: float  # in every block
    num_user_tokens: int  # hashed user-id buckets (TIGER §4.1: 2000)
    max_history: int  # most recent items the encoder reads

    ARCH: ClassVar[tuple[str, ...]] = (
        "num_encoder_layers",
        "num_decoder_layers",
        "d_model",
        "num_heads",
        "head_dim",
        "ffn_dim",
        "dropout",
        "num_user_tokens",
        "max_history",
    )


@dataclass(kw_only=True)
class SidGPTRun(RecommenderRun):
    """SID-GPT (models/sidgpt.py): decoder-only over whole user sequences; generates
    the next SID."""

    sids: str  # the SID table (sids/<run>.parquet; --sids)
    # HiD-VAE code embeddings from each code's tag path (needs tag text in the table)
    hierarchy_aware: bool
    beam_width: int  # trie-constrained beam search width in evaluation; >= the largest cutoff (20)
    d_model: int  # body width (SASRec's body)
    num_layers: int  # causal self-attention blocks
    num_heads: int  # d_model must divide by it
    ffn_dim: int  # feed-forward width
    dropout: float  # the body's dropout
    max_len: int  # most recent items read (and trained on) per user
    head_dropout: float  # the code head's FFN dropout
    # each level's softmax over the codes the trie allows (a hierarchical softmax)
    trie_softmax: bool
    id_inputs: bool  # a learned row per history item beside its code rows (N x d_model)
    id_dropout: float  # in training, the chance a history position's id row is dropped
    # weight of the unlikelihood of items the user has read, estimated on a quarter of the
    # positions (0 = off; suits a log where items do not repeat, e.g. Beauty)
    seen_penalty: float

    ARCH: ClassVar[tuple[str, ...]] = (
        "d_model",
        "num_layers",
        "num_heads",
        "ffn_dim",
        "dropout",
        "max_len",
        "head_dropout",
        "trie_softmax",
        "id_inputs",
        "id_dropout",
        "seen_penalty",
    )


@dataclass(kw_only=True)
class LMRecRun(RecommenderRun):
    """LM-Rec (models/lmrec.py, LAMIA §5.4 v): a pretrained LM with LoRA reads the
    history's SID tokens and generates the next SID; L_rip + lambda * L_align,
    then L_rip alone."""

    sids: str  # the SID table (sids/<run>.parquet; --sids)
    hierarchy_aware: bool  # unused by LM-Rec (must stay false)
    beam_width: int  # trie-constrained beam search width in evaluation; >= the largest cutoff (20)
    backbone: str  # hub id or local folder of the LM; "" = the packaged all-MiniLM-L6-v2
    tokenizer: str  # its tokenizer's folder; "" = the backbone's
    prefix_lm: bool | None  # none: encoders prefix-LM, decoders causal
    lora_rank: int  # LoRA rank on every targeted linear layer (LAMIA: 128 on OPT-350M)
    lora_alpha: int  # LoRA scaling numerator (2 x rank by default)
    lora_dropout: float  # dropout on LoRA's input
    lora_targets: str  # PEFT target_modules: "all-linear" or a module name
    max_history: int  # most recent items read (LAMIA: 20)
    titles: bool  # each history item's SID tokens followed by its title's first pieces
    title_tokens: int  # title word pieces per history item when titles
    align_tokens: int  # L_align's item text (title + category path) in word pieces
    mlm_probability: float  # encoders' SID -> text: share of text pieces masked
    head_dropout: float  # dropout in the SID head
    trie_softmax: bool  # each level's softmax over the codes the trie allows
    sid_init: str  # "random", or "text": each SID row seeded from its items' text
    align_weight: float = 1.0  # lambda of L_rip + lambda * L_align in phase 1; 0 = no L_align
    align_batch: int = 32  # catalog items L_align reads per step
    phase1_epochs: int | None = None  # phase 2 after this many epochs; none = on a valid plateau
    phase1_patience: int = 2  # the plateau: valid evaluations without a gain

    ARCH: ClassVar[tuple[str, ...]] = (
        "backbone",
        "tokenizer",
        "prefix_lm",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_targets",
        "max_history",
        "titles",
        "title_tokens",
        "align_tokens",
        "mlm_probability",
        "head_dropout",
        "trie_softmax",
        "sid_init",
    )
    KNOBS: ClassVar[tuple[str, ...]] = (
        "align_weight",
        "align_batch",
        "phase1_epochs",
        "phase1_patience",
    )
    KNOBS_KEY: ClassVar[str] = "lmrec"


# TrainConfig fields a run config never holds: the pipeline and the job fill them.
_NOT_RUN = {"root", "preset", "arch", "h2rec", "lmrec", "tag_text", "mlflow_uri", "mlflow_run_id"}
# Run fields that are inputs the pipeline resolves (RecommenderRequest), not loop knobs.
_INPUTS = ("sids", "hierarchy_aware", "embeddings")


def build_run(
    run_cls: type[RecommenderRun],
    model_config_cls: type,
    recipe: Mapping[str, Any],
    arch: Mapping[str, Any],
) -> RecommenderRun:
    """The kind's default run: TrainConfig's defaults, then the model config's own
    defaults (H2Rec's knobs, SID-GPT's head), then the recipe, then the preset's
    architecture; inputs (`sids`, `embeddings`) empty."""
    values: dict[str, Any] = {
        **_defaults(TrainConfig),
        **_defaults(model_config_cls),
        **_defaults(run_cls),  # the kind's own knobs (LM-Rec's phases)
    }
    values.update(sids="", embeddings="", hierarchy_aware=False)
    values.update(recipe)
    values.update(arch)
    return run_cls(**{f.name: values[f.name] for f in dataclasses.fields(run_cls)})


def train_config(run: RecommenderRun, preset: str) -> dict[str, Any]:
    """The train loop's config (`TrainConfig` fields, without `root`, `sids` and
    `hierarchy_aware`, which `sidrec.models.pipeline` fills in): the architecture
    spelled out as `arch`, H2Rec's knobs as `h2rec`, `preset` kept as a record."""
    values = dataclasses.asdict(run)
    loop_fields = {f.name for f in dataclasses.fields(TrainConfig)} - _NOT_RUN - set(_INPUTS)
    config: dict[str, Any] = {k: v for k, v in values.items() if k in loop_fields}
    arch = {k: values[k] for k in run.ARCH}
    if "loss" in values:  # sasrec(...) and h2rec(...) take the loss; the loop's wins anyway
        arch["loss"] = values["loss"]
    config.update(preset=preset, arch=arch)
    if run.KNOBS:
        config[run.KNOBS_KEY] = {k: values[k] for k in run.KNOBS}
    if values.get("embeddings"):  # absolute: Ray workers run elsewhere
        config["embeddings"] = str(Path(values["embeddings"]).expanduser().resolve())
    return config


def check_run(run: RecommenderRun, model_config_cls: type) -> None:
    """Raise a ValueError whose message starts with the field at fault: the
    numeric ranges, TrainConfig's checks, and the model config's own checks on
    a toy catalog (the real one is checked when the SID table is read)."""
    values = dataclasses.asdict(run)
    checks = [
        (run.lr > 0, "lr", "must be > 0"),
        (run.epochs >= 1, "epochs", "must be >= 1"),
        (run.warmup_steps >= 0, "warmup_steps", "must be >= 0"),
        (run.weight_decay >= 0, "weight_decay", "must be >= 0"),
        (0 <= values.get("dropout", 0) < 1, "dropout", "is a probability: must be in [0, 1)"),
    ]
    for key in ("num_layers", "num_encoder_layers", "num_decoder_layers", "num_heads"):
        if key in values:
            checks.append((values[key] >= 1, key, "must be >= 1"))
    if "head_dim" not in values and "num_heads" in values:  # heads split d_model
        divisible = values["d_model"] % max(values["num_heads"], 1) == 0
        checks.append((divisible, "num_heads", f"must divide d_model={values['d_model']}"))
    for ok, key, why in checks:
        if not ok:
            raise ValueError(f"{key}={values[key]!r} {why}")
    try:
        TrainConfig.from_dict({"root": "", **train_config(run, "")})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{err}") from None
    toy = {"num_items": 2, "codebook_sizes": (2,) * max(values.get("code_threshold", 1), 1)}
    toy["text_dim"] = 1  # hierarchy_aware needs tag text; the real width comes with the table
    names = {f.name for f in dataclasses.fields(model_config_cls)}
    arguments = {k: v for k, v in {**toy, **values}.items() if k in names}
    model_config_cls(**arguments)


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
