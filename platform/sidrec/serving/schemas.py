"""The endpoint's wire format (API v1): pydantic models, from which FastAPI
generates the OpenAPI schema at /openapi.json.

Item ids on the wire are the catalog's own ids (`source_id`: an ASIN for the
Amazon sets), never our dense integer ids, which change with every ingest.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ItemInfo",
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


class RecommendedItem(BaseModel):
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


class ModelInfo(BaseModel):
    name: str = Field(..., description="Registered model name (or the bundle folder's name)")
    version: str | None = Field(None, description="Registry version; None for a local folder")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model: ModelInfo
    cold_start: bool = Field(
        False, description="True when the history was empty: the items are the most popular ones"
    )
    history_used: int = Field(
        ..., description="How many of the most recent history items were read"
    )


class ItemInfo(BaseModel):
    item_id: str
    title: str
    path: list[str]
    sid: list[int] | None = None
    popularity: int = Field(0, description="Interactions in the model's training data")
