"""What the endpoint does, without Ray Serve: load a registered bundle, check a
request against it, and answer a batch of requests with one model call.

The Serve deployment (`serve_apps/recommender.py`) is a thin shell around
these functions, so they are unit-tested directly (Serve's local testing mode
does not run `@serve.batch`; docs/ARCHITECTURE.md, Ray pitfalls).

    model = load_serving_model("models:/sidrec-tiger-beauty@prod", tracking_uri=uri)
    query = check_request(model, RecommendRequest(history=["B004..."], k=10), Limits())
    [answer] = recommend_batch(model, [query], beam_width=20)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.data.sid_labels import PrefixLabels
from sidrec.models.bundle import Recommender, load_bundle
from sidrec.serving.explain import category_codes, explain, search_titles, sid_labels_of
from sidrec.serving.schemas import ItemInfo, ItemSearchResponse, RecommendRequest

__all__ = [
    "Limits",
    "Query",
    "RequestError",
    "ServingModel",
    "check_request",
    "item_info",
    "load_serving_model",
    "recommend_batch",
    "resolve_identity",
    "search_items",
]

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[^/]+)$")


class RequestError(ValueError):
    """A request the model cannot answer as asked: the HTTP layer maps it to `status`
    (422 for bad input, 404 for an unknown item) with `detail` as the body."""

    def __init__(self, status: int, detail: Any):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Server-side bounds on a request (documented in the OpenAPI descriptions)."""

    max_k: int = 100  # larger k: 422. Generative models also need k <= beam width.
    max_history: int = 1000  # longer histories: 422 (the model reads only its window)


@dataclass
class ServingModel:
    """A loaded bundle plus what the endpoint needs around it."""

    recommender: Recommender
    name: str
    version: str | None
    uri: str
    index: dict[str, int]  # catalog id -> dense item id
    source_ids: list[str]  # dense item id -> catalog id
    titles: list[str]
    paths: list[list[str]]
    sids: np.ndarray | None  # [N x L'] full SID rows, or None
    labels: PrefixLabels | None  # with SIDs: a label per SID prefix
    category_codes: np.ndarray  # [N x D] category-path prefix ids (explanations without SIDs)
    lower_titles: list[str]  # for the title search

    @property
    def generative(self) -> bool:
        """True when the model decodes SIDs (beam search) instead of scoring items."""
        # The registry says how a kind ranks (a trie alone would not: H2Rec bundles one).
        from sidrec.models.registry import model_kind

        return model_kind(self.recommender.kind).ranking == "generate"

    @property
    def context(self) -> int:
        """How many of the most recent history items the model reads."""
        cfg = self.recommender.model.cfg
        return int(getattr(cfg, "max_history", None) or cfg.max_len)

    def describe(self) -> dict[str, Any]:
        meta = self.recommender.meta
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "kind": self.recommender.kind,
            "num_items": self.recommender.num_items,
            "history_window": self.context,
            "generative": self.generative,
            "test_metrics": meta.get("metrics", {}),
            "created_at": meta.get("created_at"),
        }


def resolve_identity(uri: str) -> tuple[str, str | None]:
    """(name, version) of what `uri` points at now: `models:/NAME@ALIAS` asks the
    registry; `models:/NAME/latest` is the newest version; a folder is (its name, None)."""
    from mlflow import MlflowClient

    if m := _ALIAS_URI.match(uri):
        version = MlflowClient().get_model_version_by_alias(m["name"], m["alias"]).version
        return m["name"], str(version)
    if m := _VERSION_URI.match(uri):
        if m["version"].lower() == "latest":
            versions = MlflowClient().search_model_versions(f"name = '{m['name']}'")
            if not versions:
                raise ValueError(f"{uri}: the registry has no version of {m['name']}")
            return m["name"], str(max(int(v.version) for v in versions))
        return m["name"], m["version"]
    return Path(uri).name, None


def load_serving_model(
    uri: str, tracking_uri: str | None = None, device: str = "cpu"
) -> ServingModel:
    """Load `uri` (models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder).

    The version is resolved first and then loaded by number, so a concurrent
    alias move cannot pair one version's name with another's weights."""
    if tracking_uri:
        from sidrec import tracking

        tracking.use_store(tracking_uri)
    name, version = resolve_identity(uri) if uri.startswith("models:/") else (Path(uri).name, None)
    source = f"models:/{name}/{version}" if version is not None else uri
    rec = load_bundle(source, device=device)
    items = rec.items
    source_ids = [str(s) for s in items.column("source_id").to_pylist()]
    index = {s: i for i, s in enumerate(source_ids)}
    if len(index) != len(source_ids):
        raise ValueError(f"{uri}: items.parquet has duplicate source_id values")
    sids = rec.sid_table.full_codes() if rec.sid_table is not None else None
    titles = [t or "" for t in items.column("title").to_pylist()]
    paths = [list(c or []) for c in items.column("categories").to_pylist()]
    log.info("loaded %s (version %s, %s, %d items)", name, version, rec.kind, rec.num_items)
    return ServingModel(
        recommender=rec,
        name=name,
        version=version,
        uri=uri,
        index=index,
        source_ids=source_ids,
        titles=titles,
        paths=paths,
        sids=sids,
        labels=rec.sid_labels,
        category_codes=category_codes(paths),
        lower_titles=[t.lower() for t in titles],
    )


@dataclass(frozen=True)
class Query:
    """A checked request: dense ids of the part of the history the model reads."""

    history: list[int]
    k: int
    exclude_seen: bool
    seen: frozenset[int]  # the whole history, for exclude_seen
    recent: tuple[int, ...] = ()  # the whole history's distinct items, most recent first


def check_request(model: ServingModel, request: RecommendRequest, limits: Limits) -> Query:
    """Map catalog ids to dense ids and enforce the limits; RequestError(422) names
    what is wrong (every unknown id, not just the first)."""
    if request.k > limits.max_k:
        raise RequestError(422, f"k={request.k} is above this server's max_k={limits.max_k}")
    if len(request.history) > limits.max_history:
        raise RequestError(
            422,
            f"history has {len(request.history)} items, above this server's "
            f"max_history={limits.max_history}; send the most recent ones",
        )
    unknown = sorted({s for s in request.history if s not in model.index})
    if unknown:
        shown = unknown[:20]
        more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
        raise RequestError(422, {"message": f"unknown item ids{more}", "unknown_item_ids": shown})
    ids = [model.index[s] for s in request.history]
    recent = tuple(dict.fromkeys(reversed(ids)))
    return Query(ids[-model.context :], request.k, request.exclude_seen, frozenset(ids), recent)


def recommend_batch(
    model: ServingModel, queries: list[Query], beam_width: int, constrained: bool = True
) -> list[dict[str, Any]]:
    """Answer every query with one batched model call (one constrained beam search
    for generative models, one [b x N] scoring pass otherwise). Empty histories get
    the cold-start answer and skip the model. Returns RecommendResponse dicts.
    constrained=False: the beam search without the trie mask (benchmarks only)."""
    warm = [i for i, q in enumerate(queries) if q.history]
    ranked: dict[int, list[tuple[int, float]]] = {}
    if warm:
        for i, row in zip(
            warm, _rank([queries[i] for i in warm], model, beam_width, constrained), strict=True
        ):
            ranked[i] = row
    out = []
    for i, q in enumerate(queries):
        cold = not q.history
        rows = _cold_start(model, q) if cold else ranked[i]
        why = explain(model, [item for item, _ in rows], q.recent)
        out.append(
            {
                "items": [
                    _item(model, item, score, reason)
                    for (item, score), reason in zip(rows, why, strict=True)
                ],
                "model": {"name": model.name, "version": model.version},
                "cold_start": cold,
                "history_used": len(q.history),
            }
        )
    return out


def _rank(
    queries: list[Query], model: ServingModel, beam_width: int, constrained: bool
) -> list[list[tuple[int, float]]]:
    """Top candidates per query, best first, seen items dropped where asked."""
    rec = model.recommender
    histories = [np.asarray(q.history, dtype=np.int64) for q in queries]
    if model.generative:
        # The beam holds the candidates; dropping seen ones may leave fewer than k.
        width = max(beam_width, max(q.k for q in queries))
        res = rec.recommend(histories, k=width, beam_width=width, constrained=constrained)
    else:
        # Fetch enough that k unseen items remain after the seen ones are dropped.
        fetch = max(q.k + (len(q.seen) if q.exclude_seen else 0) for q in queries)
        res = rec.recommend(histories, k=min(fetch, rec.num_items))
    items, scores = res.items.cpu().tolist(), res.scores.float().cpu().tolist()
    out = []
    for q, row_items, row_scores in zip(queries, items, scores, strict=True):
        keep = [
            (item, score)
            for item, score in zip(row_items, row_scores, strict=True)
            if item >= 0 and not (q.exclude_seen and item in q.seen)
        ]
        out.append(keep[: q.k])
    return out


def _cold_start(model: ServingModel, q: Query) -> list[tuple[int, float]]:
    counts = _popularity(model)
    return [(i, float(counts[i])) for i in model.recommender.most_popular(q.k)]


def _popularity(model: ServingModel) -> np.ndarray:
    items = model.recommender.items
    if "popularity" not in items.column_names:  # bundles written before it existed
        return np.zeros(items.num_rows, np.int64)
    return items.column("popularity").to_numpy()


def _item(model: ServingModel, item: int, score: float, reason: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_id": model.source_ids[item],
        "title": model.titles[item],
        # JSON has no -inf; a finite floor keeps the order (only padding is -inf).
        "score": score if np.isfinite(score) else -1e30,
        "sid": None if model.sids is None else [int(c) for c in model.sids[item]],
        "path": model.paths[item],
        "explanation": reason,
    }


def item_info(model: ServingModel, source_id: str) -> ItemInfo:
    """GET /v1/items/{id}; RequestError(404) for an id the catalog does not have."""
    item = model.index.get(source_id)
    if item is None:
        raise RequestError(404, f"unknown item id {source_id!r}")
    sid = None if model.sids is None else [int(c) for c in model.sids[item]]
    return ItemInfo(
        item_id=source_id,
        title=model.titles[item],
        path=model.paths[item],
        sid=sid,
        sid_labels=sid_labels_of(model.labels, sid),
        popularity=int(_popularity(model)[item]),
    )


def search_items(model: ServingModel, q: str, limit: int) -> ItemSearchResponse:
    """GET /v1/items?q=: items whose title holds every word of q, most popular first."""
    popularity = _popularity(model)
    hits, total = search_titles(model.lower_titles, popularity, q, limit)
    return ItemSearchResponse(
        items=[
            {
                "item_id": model.source_ids[i],
                "title": model.titles[i],
                "path": model.paths[i],
                "popularity": int(popularity[i]),
            }
            for i in hits
        ],
        total=total,
    )
