"""The LAMIA train loop, `train_loop(config, reporter)`, for `sidrec.distributed.fit`:
in this process (num_workers=0, what a GPU box without Ray runs) or on N Ray
Train workers with DDP (gloo on CPU, nccl on GPU). An epoch task on
sidrec.engine's loop (resume, config check, checkpoints, progress, reports).

    config = {
        "lamia": lamia_minilm_small(),           # LamiaConfig
        "items": ".../catalog/items.parquet",
    }
    fit(train_loop, config, RunSpec(name="lamia-x", storage_path=".../train"),
        reporters=[MlflowReporter(uri, run_id)])   # optional: per-epoch metrics to MLflow

One epoch: every rank takes its slice of one seeded permutation of the
training items, in steps of batch_size / world_size items; each step samples
the items' attribute tasks (`tasks.py`), runs the dual forward pass and the
LAMIA loss (`losses.py`), bf16 autocast on GPU. After the last epoch the
palettes of *all* items are computed (sharded over the ranks, gathered), then
quantized per position (`quantize.py`), and the checkpoint holds the trainable
weights, optimizer, quantizer, codes and metrics. Earlier epochs checkpoint
the weights and optimizer only, so a restarted worker group resumes at the next
epoch; a sweep (`tokenize_every: 1`) tokenizes after every epoch, in one run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from sidrec.distributed import unwrap
from sidrec.engine import EpochPlan, autocast, resume_state, run_epochs
from sidrec.eval.sids import sid_table_metrics
from sidrec.progress import Progress
from sidrec.tokenizers.lamia.config import LamiaConfig
from sidrec.tokenizers.lamia.losses import lamia_loss, position_similarity
from sidrec.tokenizers.lamia.quantize import (
    fit_quantizer,
    normalize_palettes,
    position_ami,
    spread_collisions,
)
from sidrec.tokenizers.lamia.tasks import (
    ItemAttributes,
    item_attributes,
    render_content,
    sample_tasks,
)

__all__ = ["train_loop", "build_model", "compute_palettes", "palette_metrics", "trainable_state"]

log = logging.getLogger(__name__)


def build_model(cfg: LamiaConfig, attrs: ItemAttributes) -> torch.nn.Module:
    """The palette model of cfg.backbone; the catalog's answers fix the encoder
    backbone's decoder vocabulary."""
    answers = [v for f in attrs.fields for v in attrs.values[f] if v]
    return cfg.backbone.build(cfg.num_palette, len(attrs.fields), answers)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without frozen weights (a LoRA checkpoint is MBs, not GBs)."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in frozen}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    lost = sorted(set(missing) - frozen)
    if lost or unexpected:
        raise ValueError(
            f"the checkpoint does not fit this LAMIA model (missing {lost[:5]}, "
            f"unexpected {list(unexpected)[:5]}): give this run another name"
        )


def _autocast(device: torch.device, bf16: bool):
    """bf16 on GPU only: on CPU it is slower (config.py), unlike the recommenders'."""
    return autocast(device, bf16 and device.type == "cuda")


@torch.no_grad()
def compute_palettes(
    model: torch.nn.Module,
    attrs: ItemAttributes,
    rows: np.ndarray,
    batch_size: int,
    device,
    bf16: bool,
) -> np.ndarray:
    """[len(rows) x L x d] float32 palettes of the items `rows`, from their full content."""
    was_training = model.training
    model.eval()
    texts = [render_content(attrs, int(r)) for r in rows]
    # Longest first: batches of similar length pad little.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(rows), model.num_palette, model.palette_dim), dtype=np.float32)
    with Progress("lamia: palettes", total=len(order), unit="items", logger=log) as progress:
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            ids, valid = model.tokenize_content([texts[i] for i in pick])
            with _autocast(device, bf16):
                p = model.palette(ids.to(device), valid.to(device))
            out[pick] = p.float().cpu().numpy()
            progress.update(len(pick))
    model.train(was_training)
    return out


def palette_metrics(palettes: np.ndarray, sample: int = 2048, seed: int = 0) -> dict[str, float]:
    """Mean cosine between the positions of one item, and between two items at
    one position (on a sample of items): what the two hinges push down; and
    the positions' mean CKA (how alike the item geometry they induce is)."""
    p = normalize_palettes(palettes)
    rng = np.random.default_rng(seed)
    p = p[rng.permutation(len(p))[:sample]]
    n, levels, _ = p.shape
    intra = (
        np.einsum("nld,nmd->nlm", p, p)[:, ~np.eye(levels, dtype=bool)].mean()
        if levels > 1
        else 0.0
    )
    inter = [(p[:, i] @ p[:, i].T)[~np.eye(n, dtype=bool)].mean() for i in range(levels)]
    return {
        "palette/intra_cos": float(intra),
        "palette/inter_cos": float(np.mean(inter)),
        # Gram matrices are [L x n x n]: 1,024 items keep them small at any L.
        "palette/position_cka": float(position_similarity(torch.from_numpy(p[:1024]).double())),
    }


def _gather_palettes(model, attrs, cfg: LamiaConfig, reporter) -> np.ndarray:
    """All items' palettes: each rank computes a slice, rank order restores the catalog."""
    n = attrs.num_items
    rows = np.arange(n)[reporter.rank :: reporter.world_size]
    mine = compute_palettes(model, attrs, rows, cfg.palette_batch_size, reporter.device, cfg.bf16)
    if reporter.world_size == 1:
        return mine
    import torch.distributed as dist

    parts: list[Any] = [None] * reporter.world_size
    dist.all_gather_object(parts, (rows, mine))
    out = np.zeros((n, *mine.shape[1:]), dtype=np.float32)
    for r, p in parts:
        out[r] = p
    return out


class _LamiaTask:
    """A LAMIA epoch for sidrec.engine: the steps of the module docstring; its
    evaluation tokenizes every item (palettes -> quantizer -> codes)."""

    def __init__(self, cfg: LamiaConfig, model, ddp, attrs: ItemAttributes, reporter):
        self.cfg, self.model, self.ddp, self.attrs = cfg, model, ddp, attrs
        self.reporter = reporter
        self.pool = np.random.default_rng(cfg.seed).permutation(attrs.num_items)
        self.pool = self.pool[: cfg.train_items or attrs.num_items]
        self.rng: np.random.Generator | None = None
        self.tokenized: dict[str, Any] = {}  # codes and quantizer, once evaluated

    def batches(self, epoch: int) -> list[np.ndarray]:
        cfg, world, rank = self.cfg, self.reporter.world_size, self.reporter.rank
        order = np.random.default_rng(cfg.seed * 100003 + epoch).permutation(self.pool)
        shard = order[: len(order) - len(order) % world][rank::world]
        self.rng = np.random.default_rng((cfg.seed, epoch, rank))  # this epoch's task draws
        per_rank = max(1, cfg.batch_size // world)
        steps = [shard[s : s + per_rank] for s in range(0, len(shard) - 1, per_rank)]
        # The inter-palette hinge needs a pair: a last single item is left out.
        return [rows for rows in steps if len(rows) >= 2]

    def step(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return _step(
            self.ddp, self.model, self.attrs, rows, self.cfg, self.rng, self.reporter.device
        )

    def evaluate(self, epoch: int, split: str) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        self.tokenized = _tokenize_all(
            unwrap(self.ddp), self.attrs, self.cfg, self.reporter, metrics
        )
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": trainable_state(self.model),
            "fields": list(self.attrs.fields),
            **self.tokenized,
        }


def train_loop(config: dict[str, Any], reporter) -> None:
    """Train the palette model of config["lamia"], then tokenize every item.

    config["tokenize_every"] = k (a sweep: 1) tokenizes after every k-th epoch
    too, so each report carries the SID metrics; default: after the last only."""
    cfg: LamiaConfig = config["lamia"]
    items = pq.read_table(config["items"])
    attrs = item_attributes(items, cfg.task_fields)
    cfg.validate(attrs.num_items)
    device = reporter.device

    # -- model: fresh or from the latest checkpoint ------------------------
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, attrs).to(device)
    identity = {"learner": cfg.learner, "config": asdict(cfg)}
    state = resume_state(reporter, identity)
    if state is not None:
        load_trainable(model, state["model"])
    ddp = reporter.prepare_model(model)
    params = [p for p in ddp.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = EpochPlan(
        kind="lamia",
        epochs=cfg.epochs,
        identity=identity,
        model=ddp,
        optimizer=optimizer,
        grad_clip=cfg.grad_clip,
        # bf16 is in the step (the forward pass alone), not around it: see `_step`.
        eval_every=config.get("tokenize_every") or cfg.epochs,
    )
    run_epochs(_LamiaTask(cfg, model, ddp, attrs, reporter), plan, reporter, state)


def _step(ddp, model, attrs, rows, cfg: LamiaConfig, rng, device) -> dict[str, torch.Tensor]:
    sample = sample_tasks(attrs, rows, cfg.drop_prob, rng)
    ids, valid = model.tokenize_content(sample.content)
    answer_ids, answer_valid = model.tokenize_answers(sample.answers)
    with _autocast(device, cfg.bf16):
        gen, palette = ddp(
            ids.to(device),
            valid.to(device),
            torch.as_tensor(sample.task_item, device=device),
            torch.as_tensor(sample.task_id, device=device),
            answer_ids.to(device),
            answer_valid.to(device),
        )
    return lamia_loss(
        gen,
        palette.float(),
        cfg.gamma,
        cfg.intra_margin,
        cfg.inter_margin,
        centered=cfg.center_hinges,
        decorrelate=cfg.decorrelate_weight,
    )


def _tokenize_all(
    model, attrs, cfg: LamiaConfig, reporter, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Palettes of every item → quantizer and codes (the same on every rank)."""
    began = time.perf_counter()
    log.info("lamia: computing the palettes of all %d items", attrs.num_items)
    palettes = _gather_palettes(model, attrs, cfg, reporter)
    palette_seconds = time.perf_counter() - began
    log.info(
        "lamia: palettes in %.0f s; PCA %d + K-Means %d per position",
        palette_seconds, cfg.pca_dim, cfg.codebook_size,
    )  # fmt: skip
    quantizer = fit_quantizer(
        palettes, cfg.pca_dim, cfg.codebook_size, cfg.kmeans_iters, cfg.seed, cfg.kmeans_backend
    )
    codes = quantizer.codes(palettes)
    if cfg.spread_collisions:
        nearest = sid_table_metrics(codes, cfg.codebook_size)
        codes, moved = spread_collisions(quantizer.reduce(palettes), quantizer.centroids, codes)
        metrics.update(
            nearest_collision_rate=nearest["collision_rate"],
            nearest_max_items_per_sid=nearest["max_items_per_sid"],
            spread_moved=moved,
        )
        log.info(
            "lamia: %d items moved to a free SID one code away (nearest-centroid codes: "
            "collision rate %.1f%%, max %d items per SID)",
            moved, 100 * nearest["collision_rate"], nearest["max_items_per_sid"],
        )  # fmt: skip
    metrics.update(sid_table_metrics(codes, cfg.codebook_size))
    metrics.update(palette_metrics(palettes, seed=cfg.seed))
    metrics["position_ami"] = position_ami(codes)
    metrics.update(
        palette_seconds=palette_seconds,
        quantize_seconds=time.perf_counter() - began - palette_seconds,
    )
    return {"codes": codes, "quantizer": quantizer.state()}
