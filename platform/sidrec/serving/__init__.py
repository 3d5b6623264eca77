"""Serving (docs/ARCHITECTURE.md, stage 6): the plain functions behind the HTTP endpoint in
`serve_apps/recommender.py`, and its wire format.

    from sidrec.serving import Limits, check_request, load_serving_model, recommend_batch
"""

from sidrec.serving.engine import (
    Limits,
    Query,
    RequestError,
    ServingModel,
    check_request,
    item_info,
    load_serving_model,
    recommend_batch,
    resolve_identity,
    search_items,
)
from sidrec.serving.schemas import (
    CodeLabel,
    Explanation,
    HistoryMatch,
    ItemInfo,
    ItemSearchResponse,
    ItemSummary,
    ModelInfo,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)

__all__ = [
    "CodeLabel",
    "Explanation",
    "HistoryMatch",
    "ItemInfo",
    "ItemSearchResponse",
    "ItemSummary",
    "Limits",
    "ModelInfo",
    "Query",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "RequestError",
    "ServingModel",
    "check_request",
    "item_info",
    "load_serving_model",
    "recommend_batch",
    "resolve_identity",
    "search_items",
]
