"""The endpoint's wire format (API v1): pydantic models, from which FastAPI
generates the OpenAPI schema at /openapi.json.

Item ids on the wire are the catalog's own ids (`source_id`: an ASIN for the
Amazon sets), never our dense integer ids, which change with every ingest.

Every model here forbids unknown fields, so the OpenAPI document says
`additionalProperties: false` for requests and responses alike: the contract
test (tests/serve_apps/test_contract.py) holds the server to exactly it.

Explanations (HiD-VAE §4.2.7 and §6.3.3: a SID read as a semantic path, tied
back to the user's history): each recommended item carries, per code of its
SID, a label of the prefix ending at that code (`sidrec.data.sid_labels`), and
the history items that share the item's longest SID prefix. Models without
SIDs (SASRec) match on the catalog category path instead: the history items
sharing the longest category-path prefix with the recommended item
(`basis: "category"`, `sid_labels` empty).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CodeLabel",
    "Explanation",
    "HistoryMatch",
    "ItemInfo",
    "ItemSearchResponse",
    "ItemSummary",
    "ModelInfo",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
]


class RecommendRequest(BaseModel):
    """POST /v1/recommend. Unknown fields are rejected (a typo such as `exclude_seeen`
    would otherwise be silently ignored), and types are strict: no 0 -> false,
    no "5" -> 5 coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)

    history: list[str] = Field(
        ...,
        description="The user's items, oldest first, as the catalog names them. "
        "Empty: the cold-start answer (most popular items, flagged `cold_start`). "
        "Longer than the model reads: only the most recent items are used "
        "(`history_used` says how many); longer than the server's max_history: 422.",
    )
    k: int = Field(10, ge=1, description="How many items to return (<= the server's max_k).")
    exclude_seen: bool = Field(
        False, description="Drop items already in the history from the answer."
    )


_STRICT = ConfigDict(extra="forbid", strict=True)


class CodeLabel(BaseModel):
    """What one code of a SID stands for: the label of the SID prefix ending at it."""

    model_config = _STRICT

    code: int = Field(..., description="The code at this level of the SID")
    label: str = Field(
        ..., description='One line: "category: term, term, term" ("" when nothing is known)'
    )
    category: str = Field(
        ...,
        description="The tag the SID table gives this level (HiD-VAE's tags), else the "
        "majority catalog category at this depth among the items under the prefix",
    )
    terms: list[str] = Field(
        ..., description="Up to 3 title words most over-represented under the prefix (tf-idf)"
    )
    items: int = Field(..., description="Catalog items whose SID starts with this prefix")


class HistoryMatch(BaseModel):
    model_config = _STRICT

    item_id: str
    title: str


class Explanation(BaseModel):
    """Why this item: what its SID codes stand for, and which history items it is near."""

    model_config = _STRICT

    basis: Literal["sid", "category"] = Field(
        ...,
        description="What `history` was matched on: the SID prefix (models with SIDs), or "
        "the catalog category path (full-catalog models without SIDs, e.g. SASRec)",
    )
    sid_labels: list[CodeLabel] = Field(
        ..., description="One label per code of the item's SID, coarse to fine; [] without SIDs"
    )
    shared_prefix: int = Field(
        ...,
        description="Length of the longest SID prefix (or category-path prefix) the item "
        "shares with a history item; 0: none",
    )
    history: list[HistoryMatch] = Field(
        ...,
        description="History items sharing that longest prefix, most recent first (at most 5); "
        "[] when shared_prefix is 0",
    )


class RecommendedItem(BaseModel):
    model_config = _STRICT

    item_id: str = Field(..., description="The catalog's id of the item")
    title: str
    score: float = Field(
        ...,
        description="Model score: the SID log-probability for generative models, "
        "the dot product for SASRec / H2Rec, the training count for cold start",
    )
    sid: list[int] | None = Field(
        None, description="The item's semantic ID, when the model has one"
    )
    path: list[str] = Field(..., description="The item's category path, coarse to fine")
    explanation: Explanation


class ModelInfo(BaseModel):
    model_config = _STRICT

    name: str = Field(..., description="Registered model name (or the bundle folder's name)")
    version: str | None = Field(None, description="Registry version; None for a local folder")


class RecommendResponse(BaseModel):
    model_config = _STRICT

    items: list[RecommendedItem]
    model: ModelInfo
    cold_start: bool = Field(
        False, description="True when the history was empty: the items are the most popular ones"
    )
    history_used: int = Field(
        ..., description="How many of the most recent history items were read"
    )


class ItemInfo(BaseModel):
    """GET /v1/items/{id}: the same SID labels a recommendation of the item shows."""

    model_config = _STRICT

    item_id: str
    title: str
    path: list[str]
    sid: list[int] | None = None
    sid_labels: list[CodeLabel] = Field(
        default_factory=list, description="One label per code of the SID; [] without SIDs"
    )
    popularity: int = Field(0, description="Interactions in the model's training data")


class ItemSummary(BaseModel):
    model_config = _STRICT

    item_id: str
    title: str
    path: list[str]
    popularity: int = Field(..., description="Interactions in the model's training data")


class ItemSearchResponse(BaseModel):
    """GET /v1/items?q=: catalog items whose title holds every word of q."""

    model_config = _STRICT

    items: list[ItemSummary] = Field(..., description="Most popular first, at most `limit`")
    total: int = Field(..., description="How many items match in all")
