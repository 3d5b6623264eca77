"""The serving bundle: what `models:/sidrec-<model>-<dataset>@alias` holds, and loading it.

A bundle is a plain folder, logged as a run artifact and registered in MLflow
(`sidrec.tracking.register_model`), not an MLflow pytorch flavour: MLflow's
default pt2 export loads back a GraphModule without `step` / `reorder` /
`score` (docs/ARCHITECTURE.md, "Versions and the Ray / MLflow pitfalls"), and pickled modules break on any code move. Files:

    bundle.json      format, kind (a key of sidrec.models.registry.MODELS), model config, metrics, provenance
    weights.pt       the state dict (tensors only: torch.load(weights_only=True))
    items.parquet    item_id, source_id, title, categories (what a response shows),
                     and popularity (training interactions; the cold-start answer)
    sids.parquet     generative kinds (TIGER, SID-GPT): the SID table with per-level tag text (+ its manifest)
    trie.pt          generative kinds: the trie's CSR transition tables (SidTrie.state_dict)
    sid_labels.parquet   with a SID table: a label per SID prefix, what each code stands
                     for (sidrec.data.sid_labels); bundles written before it have none,
                     and load_bundle computes the labels at load instead

    rec = load_bundle("models:/sidrec-tiger-beauty@latest")   # or a local folder
    out = rec.recommend([[12, 7, 301]], k=10)                  # items, scores: [1 x 10]
    rec.describe(out.items[0].tolist())                        # titles, SIDs, tag paths
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from sidrec.artifacts import library_versions, utc_now, write_json_atomic
from sidrec.data.sid_labels import (
    PrefixLabels,
    compute_prefix_labels,
    read_prefix_labels,
    write_prefix_labels,
)
from sidrec.data.sids import SidTable, read_sid_table, write_sid_table
from sidrec.decoding import SidTrie, constrained_beam_search
from sidrec.models._topk import drop_flagged
from sidrec.models.registry import MODELS, model_kind
from sidrec.models.sasrec import pad_histories

__all__ = [
    "BUNDLE_FORMAT",
    "Recommendations",
    "Recommender",
    "load_bundle",
    "prefix_labels",
    "save_bundle",
]

BUNDLE_FORMAT = "sidrec-recommender-bundle"
# v2: sid_labels.parquet in the columnar format (sidrec.data._label_io). v1 bundles
# still load (their labels file is read into the same structure); an older
# sidrec refuses a v2 bundle by its version, not by a failed read.
BUNDLE_VERSION = 2
READABLE_VERSIONS = (1, 2)
ITEM_COLUMNS = ("item_id", "source_id", "title", "categories")
LABELS_FILE = "sid_labels.parquet"

log = logging.getLogger(__name__)


def _generates(kind: str) -> bool:
    """The kind decodes SIDs with the trie beam search (else it scores the catalog)."""
    return model_kind(kind).ranking == "generate"


def save_bundle(
    folder: str | Path,
    kind: str,
    model_config: dict[str, Any],
    state_dict: dict[str, Tensor],
    items: pa.Table,
    sid_table: SidTable | None = None,
    metrics: dict[str, float] | None = None,
    provenance: dict[str, Any] | None = None,
    popularity: np.ndarray | None = None,
    sid_labels: PrefixLabels | None = None,
) -> Path:
    """Write a bundle into folder (created); returns it. TIGER needs its SID table.
    popularity: [N] training interaction counts per item (zeros when None).
    sid_labels: the SID table's prefix labels when already computed (bundles sharing
    one table); None: computed here from the table and the items."""
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    if _generates(kind) and sid_table is None:
        raise ValueError(f"a {kind} bundle needs the SID table the model was trained on")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _build(kind, model_config, state_dict)  # fail here, not in the server, if they disagree
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, folder / "weights.pt")
    pq.write_table(_with_popularity(items, popularity), folder / "items.parquet")
    files = ["weights.pt", "items.parquet"]
    if sid_table is not None:
        write_sid_table(folder / "sids.parquet", sid_table, dict(sid_table.meta))
        trie = SidTrie.build(
            torch.as_tensor(sid_table.full_codes()), sid_table.full_codebook_sizes()
        )
        torch.save(trie.state_dict(), folder / "trie.pt")
        # Once here, not per request: ~2 s on Beauty's 12k items.
        labels = sid_labels if sid_labels is not None else prefix_labels(sid_table, items)
        write_prefix_labels(folder / LABELS_FILE, labels)
        files += ["sids.parquet", "sids.manifest.json", "trie.pt", LABELS_FILE]
    write_json_atomic(
        folder / "bundle.json",
        {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "kind": kind,
            "model_config": model_config,
            "num_items": items.num_rows,
            "metrics": metrics or {},
            "provenance": provenance or {},
            "files": files,
            "created_at": utc_now(),
            "versions": library_versions(),
        },
    )
    return folder


def _with_popularity(items: pa.Table, popularity: np.ndarray | None) -> pa.Table:
    counts = np.zeros(items.num_rows, np.int64) if popularity is None else np.asarray(popularity)
    if counts.shape != (items.num_rows,):
        raise ValueError(
            f"popularity must have one count per item ({items.num_rows}), got {counts.shape}"
        )
    return items.select(list(ITEM_COLUMNS)).append_column(
        "popularity", pa.array(counts, pa.int64())
    )


def prefix_labels(sid_table: SidTable, items: pa.Table) -> PrefixLabels:
    """The label of every prefix of the table's SIDs, read through `items`."""
    return compute_prefix_labels(
        sid_table.full_codes(),
        [t or "" for t in items.column("title").to_pylist()],
        items.column("categories"),  # arrow list<string>: read without Python objects
        sid_table.tags,
        learned_levels=sid_table.num_levels,
    )


def _build(
    kind: str, model_config: dict[str, Any], state_dict: dict[str, Tensor]
) -> torch.nn.Module:
    spec = model_kind(kind)
    unknown = sorted(set(model_config) - {f.name for f in fields(spec.config_cls)})
    if unknown:  # a config written by another sidrec version: say which fields
        raise ValueError(f"model_config: {kind} has no field(s) {unknown}")
    model = spec.model_cls(spec.config_cls(**model_config))
    model.load_state_dict(state_dict)
    return model.eval()


class Recommendations(NamedTuple):
    """items: [b x k] item ids, best first (-1 where fewer exist); scores: [b x k]
    (SASRec: dot products; TIGER: SID log-probabilities, -inf on padding)."""

    items: Tensor
    scores: Tensor


@dataclass
class Recommender:
    """A loaded bundle: the model in eval mode plus what it needs to answer."""

    kind: str
    model: torch.nn.Module
    items: pa.Table
    meta: dict[str, Any]
    sid_table: SidTable | None = None
    trie: SidTrie | None = None
    sid_labels: PrefixLabels | None = None  # with a SID table: a label per SID prefix

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    @property
    def history_length(self) -> int:
        """The most recent items the model reads."""
        cfg = self.model.cfg
        return cfg.max_history if hasattr(cfg, "max_history") else cfg.max_len

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def recommend(
        self,
        histories: list[list[int]] | list[np.ndarray],
        k: int = 10,
        users: list[int] | None = None,
        exclude_seen: bool = False,
        beam_width: int = 20,
        constrained: bool = True,
    ) -> Recommendations:
        """Top-k items after each history (item ids, oldest first).

        users: ids for TIGER's hashed user token (None or -1: unknown user).
        exclude_seen: drop items already in the history. TIGER decodes
        beam_width candidates (>= k) and, with exclude_seen, returns fewer than
        k (-1 padded) when seen items fill its beam. constrained=False drops
        TIGER's trie mask (to measure its cost): invalid SIDs then come back as -1.
        """
        self._check(histories)
        if not _generates(self.kind):
            scores = self.model.score(histories)  # [b x N]
            if exclude_seen:
                scores = _mask_seen_(scores, histories)
            top = scores.topk(min(k, self.num_items), dim=1)
            return Recommendations(top.indices, top.values)
        if k > beam_width:
            raise ValueError(f"k={k} > beam_width={beam_width}: raise beam_width")
        history = pad_histories(histories, self.history_length, self.device)
        user_ids = torch.as_tensor(
            [-1] * len(histories) if users is None else users, dtype=torch.long, device=self.device
        )
        valid = history >= 0
        state = self.model.encode(history, user_ids, None if bool(valid.all()) else valid)
        beam = constrained_beam_search(
            self.model,
            len(histories),
            self.trie,
            beam_width=beam_width,
            topk=beam_width,
            state=state,
            constrained=constrained,
        )
        items, scores = beam.items, beam.scores
        if exclude_seen:
            items, scores = drop_flagged(items, _seen_among(histories, items), scores)
        return Recommendations(items[:, :k], scores[:, :k])

    def most_popular(self, k: int, exclude: list[int] | None = None) -> list[int]:
        """The k items with the most training interactions (ties: lower id first),
        minus `exclude`. Bundles written before popularity existed rank by id."""
        if "popularity" in self.items.column_names:
            counts = self.items.column("popularity").to_numpy()
        else:
            counts = np.zeros(self.num_items, np.int64)
        order = np.lexsort((np.arange(self.num_items), -counts))
        skip = set(exclude or ())
        return [int(i) for i in order[: k + len(skip)] if int(i) not in skip][:k]

    def describe(self, item_ids: list[int]) -> list[dict[str, Any]]:
        """Metadata per item id: title, source id, categories, and for TIGER the SID
        codes with the tag path behind each code and each code's prefix label."""
        rows = self.items.take(pa.array([i for i in item_ids if i >= 0], pa.int64())).to_pylist()
        if self.sid_table is not None:
            full = self.sid_table.full_codes()
            for row in rows:
                i = row["item_id"]
                row["sid"] = full[i].tolist()
                tags = self.sid_table.tags[i] if self.sid_table.tags else []
                row["tag_path"] = [t for t in tags if t]
                if self.sid_labels is not None:
                    row["sid_labels"] = [lab.text for lab in self.sid_labels.path(full[i])]
        return rows

    def _check(self, histories) -> None:
        for row, h in enumerate(histories):
            ids = np.asarray(h, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_items):
                raise ValueError(
                    f"histories[{row}]: item ids must lie in [0, {self.num_items}), "
                    f"got {int(ids.min())}..{int(ids.max())}"
                )


def _seen_positions(histories, device) -> tuple[Tensor, Tensor, Tensor]:
    """(rows, columns, items): one triple per history entry (item `items[j]` is entry
    `columns[j]` of history `rows[j]`), so a request costs O(history), not O(N)."""
    lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(histories)), lengths)
    starts = lengths.cumsum(0) - lengths
    columns = torch.arange(len(rows)) - starts[rows]
    flat = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    items = torch.from_numpy(np.concatenate(flat)) if flat else torch.zeros(0, dtype=torch.long)
    return rows.to(device), columns.to(device), items.to(device)


def _mask_seen_(scores: Tensor, histories) -> Tensor:
    """scores [b x N] with -inf written at each row's history items (in place)."""
    rows, _, items = _seen_positions(histories, scores.device)
    return scores.index_put_((rows, items), torch.tensor(float("-inf"), device=scores.device))


def _seen_among(histories, candidates: Tensor) -> Tensor:
    """[b x K] bool: candidates [b x K] (item ids, -1 padding) in their row's history.

    Compares the K candidates with the row's history ([b x K x H] booleans, H the
    longest history) instead of building a [b x N] mask (N bytes a row: 10 MB a
    row at 10M items; docs/SCALE.md)."""
    rows, columns, items = _seen_positions(histories, candidates.device)
    width = max(1, max((len(h) for h in histories), default=0))
    # -2 pads: a -1 candidate (no item) never matches a history entry.
    padded = torch.full((len(histories), width), -2, dtype=torch.long, device=candidates.device)
    padded[rows, columns] = items
    return (candidates[:, :, None] == padded[:, None, :]).any(-1)


def load_bundle(
    source: str | Path, device: str | torch.device = "cpu", tracking_uri: str | None = None
) -> Recommender:
    """A Recommender from a bundle folder or an MLflow URI (`models:/name@alias`,
    `runs:/<id>/bundle`). tracking_uri: the MLflow store (else MLFLOW_TRACKING_URI)."""
    source = str(source)
    if "://" in source or source.startswith("models:/"):
        from sidrec import tracking

        if tracking_uri:
            tracking.use_store(tracking_uri)
        folder = tracking.download_model(source)
    else:
        folder = Path(source)
    meta_path = folder / "bundle.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no bundle.json; not a sidrec recommender bundle")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{folder}: bundle format {meta.get('format')} v{meta.get('version')}, "
            f"this sidrec reads {BUNDLE_FORMAT} v{', v'.join(map(str, READABLE_VERSIONS))}"
        )
    kind = meta["kind"]
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    try:
        model = _build(kind, meta["model_config"], state).to(device)
    except ValueError as err:
        raise ValueError(f"{meta_path}: {err}") from None
    items = pq.read_table(folder / "items.parquet")
    sid_table = trie = labels = None
    if (folder / "sids.parquet").is_file():  # TIGER; H2Rec too, for `describe`
        sid_table = read_sid_table(folder / "sids.parquet", num_items=items.num_rows)
        labels = _load_labels(folder, sid_table, items)
    if _generates(kind):
        trie_state = torch.load(folder / "trie.pt", map_location="cpu", weights_only=True)
        trie = SidTrie.from_state_dict(trie_state).to(device)
        _warm_trie(model, trie)
    return Recommender(kind, model, items, meta, sid_table, trie, labels)


def _load_labels(folder: Path, sid_table: SidTable, items: pa.Table) -> PrefixLabels:
    """The bundle's SID prefix labels; a bundle written before they existed gets them
    computed now, from its own SID table and items (the same labels, seconds later)."""
    if (folder / LABELS_FILE).is_file():
        return read_prefix_labels(folder / LABELS_FILE)
    start = time.perf_counter()
    labels = prefix_labels(sid_table, items)
    log.info(
        "%s: no %s (bundle predates SID labels): computed %d labels in %.1f s",
        folder, LABELS_FILE, len(labels), time.perf_counter() - start,
    )  # fmt: skip
    return labels


def _warm_trie(model, trie: SidTrie) -> None:
    """Give a model that keeps its own SID trie (SID-GPT) the bundle's, at load time:
    the replica's first request then builds nothing, and one trie sits in memory, not
    two. A model whose codes are not the trie's (not expected) builds its own here."""
    if not hasattr(model, "use_trie"):
        return
    try:
        model.use_trie(trie)
    except ValueError as err:
        log.warning("bundle: %s; building the model's own trie now", err)
        model.sid_trie()
