"""Explanations for recommended items, and the catalog title search of the web page.

An explanation (wire format: `sidrec.serving.schemas.Explanation`) says what
each code of the item's SID stands for (the bundle's prefix labels,
`sidrec.data.sid_labels`; HiD-VAE §4.2.7 / §6.3.3 read a SID as a semantic
path) and which history items share the item's longest SID prefix: the part of
the decoded path the user had already walked.

Models without SIDs (SASRec scores the full catalog) have no codes to read.
For them the explanation is made the same way on the catalog category path
instead: the history items sharing the longest category-path prefix with the
recommended item (`basis: "category"`), and no SID labels. Both cases run on
one [N x D] integer table per model (`prefix_table`), so a request costs one
vectorized comparison of k items against the history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sidrec.data.sid_labels import PrefixLabels

__all__ = ["MAX_MATCHES", "category_codes", "explain", "search_titles", "sid_labels_of"]

MAX_MATCHES = 5  # history items shown per recommendation


def category_codes(paths: list[list[str]]) -> np.ndarray:
    """[N x D] int: column d is an id of the item's category path cut after d+1 steps
    (-1 where the path is shorter), so equal ids mean equal path prefixes."""
    depth = max((len(p) for p in paths), default=0)
    out = np.full((len(paths), max(depth, 1)), -1, dtype=np.int64)
    ids: dict[tuple[str, ...], int] = {}
    for item, path in enumerate(paths):
        for d in range(len(path)):
            out[item, d] = ids.setdefault(tuple(path[: d + 1]), len(ids))
    return out


def shared_prefix_lengths(table: np.ndarray, items: list[int], history: list[int]) -> np.ndarray:
    """[k x h]: how many leading columns of `table` each item shares with each history
    item (-1 entries never match)."""
    a = table[np.asarray(items, dtype=np.int64)][:, None, :]  # [k x 1 x D]
    b = table[np.asarray(history, dtype=np.int64)][None, :, :]  # [1 x h x D]
    same = (a == b) & (a >= 0)
    return np.cumprod(same, axis=2).sum(axis=2)


def sid_labels_of(labels: PrefixLabels | None, sid) -> list[dict[str, Any]]:
    """The wire form of one label per code of sid ([] without SIDs)."""
    if labels is None or sid is None:
        return []
    return [
        {
            "code": int(code),
            "label": lab.text,
            "category": lab.category,
            "terms": list(lab.terms),
            "items": lab.items,
        }
        for code, lab in zip(sid, labels.path(sid), strict=True)
    ]


def explain(model, items: list[int], recent: tuple[int, ...]) -> list[dict[str, Any]]:
    """One Explanation dict per recommended item id. recent: the request's distinct
    history item ids, most recent first. model: a sidrec.serving.ServingModel."""
    by_sid = model.sids is not None
    table = model.sids if by_sid else model.category_codes
    shared = (
        shared_prefix_lengths(table, items, list(recent))
        if recent and items
        else np.zeros((len(items), 0), np.int64)
    )
    out = []
    for row, item in enumerate(items):
        best = int(shared[row].max()) if shared.shape[1] else 0
        matches = np.flatnonzero(shared[row] == best)[:MAX_MATCHES] if best else []
        out.append(
            {
                "basis": "sid" if by_sid else "category",
                "sid_labels": sid_labels_of(model.labels, model.sids[item]) if by_sid else [],
                "shared_prefix": best,
                "history": [
                    {"item_id": model.source_ids[recent[j]], "title": model.titles[recent[j]]}
                    for j in matches
                ],
            }
        )
    return out


def search_titles(lower_titles: list[str], popularity: np.ndarray, q: str, limit: int):
    """(item ids, most popular first, at most limit; how many match): the items whose
    title holds every whitespace-separated word of q, case-insensitively."""
    words = q.lower().split()
    hits = [i for i, title in enumerate(lower_titles) if all(w in title for w in words)]
    hits.sort(key=lambda i: (-int(popularity[i]), i))
    return hits[:limit], len(hits)
