"""Hierarchical item tags as integer classes per level, and the readings of SIDs
through them.

Level l's tag of an item is its category path cut after l+1 steps
("Skin Care > Face" at level 1): the class is the whole prefix, so "Face"
under Skin Care and "Face" under Makeup stay apart and the classes form a
tree. The text shown for a code is the last step ("Face"). An item whose path
is shorter than l+1 has no tag at level l (-1): it is masked out of that
level's tag losses and accuracies, never counted as wrong.

Beauty's `categories` column is the ground truth; datasets without one get
their paths from `jobs/generate_tags.py` (a parquet with `item_id` and a
list<string> column `tags` or `categories`, read by `read_tag_paths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidrec.data import DataError

__all__ = [
    "TagSet",
    "tags_from_paths",
    "read_tag_paths",
    "tag_centroids",
    "majority_tags",
    "PATH_SEPARATOR",
]

PATH_SEPARATOR = " > "


@dataclass
class TagSet:
    """ids: [N x Lt] int64 (-1 = no tag); keys[l]: class l's path prefixes;
    text[l]: their last step, for display."""

    ids: np.ndarray
    keys: list[list[str]]
    text: list[list[str]]
    source: str = ""

    @property
    def levels(self) -> int:
        return self.ids.shape[1]

    @property
    def sizes(self) -> list[int]:
        return [len(k) for k in self.keys]

    def coverage(self) -> list[float]:
        """Per level: share of items that have a tag."""
        return [float((self.ids[:, level] >= 0).mean()) for level in range(self.levels)]


def tags_from_paths(paths: list[list[str] | None], levels: int, source: str = "") -> TagSet:
    """Classes for the first `levels` steps of each item's path (None/[] = untagged).

    Raises DataError naming the source when a level has no tagged item at all:
    supervision of that level is impossible, so the number of supervised
    levels (`tag_levels`) must come down.
    """
    n = len(paths)
    ids = np.full((n, levels), -1, dtype=np.int64)
    keys: list[list[str]] = []
    text: list[list[str]] = []
    for level in range(levels):
        index: dict[str, int] = {}
        shown: list[str] = []
        for item, path in enumerate(paths):
            steps = [s.strip() for s in (path or [])[: level + 1]]
            if len(steps) <= level or any(not s for s in steps):
                continue
            key = PATH_SEPARATOR.join(steps)
            if key not in index:
                index[key] = len(index)
                shown.append(steps[-1])
            ids[item, level] = index[key]
        if not index:
            raise DataError(
                f"no item has a level-{level} tag (paths are shorter); "
                f"set tag_levels <= {level} or supply deeper tags",
                file=source or None,
                field="categories",
            )
        keys.append(list(index))
        text.append(shown)
    return TagSet(ids=ids, keys=keys, text=text, source=source)


def read_tag_paths(path: str | Path, num_items: int) -> list[list[str] | None]:
    """Paths from a tags parquet (`item_id` + `tags` or `categories` list<string>).

    Items the file does not list are untagged; ids outside 0..num_items-1 are
    an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("tags file not found", file=path)
    table = pq.read_table(path)
    column = next((c for c in ("tags", "categories") if c in table.column_names), None)
    if "item_id" not in table.column_names or column is None:
        raise DataError(
            f"needs columns item_id and tags (or categories), has {table.column_names}",
            file=path,
        )
    if not pa.types.is_list(table.schema.field(column).type):
        raise DataError("must be list<string>", file=path, field=column)
    ids = table.column("item_id").to_numpy()
    bad = (ids < 0) | (ids >= num_items)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"item_id {int(ids[row])} outside the catalog (0..{num_items - 1})",
            file=path,
            row=row,
            field="item_id",
        )
    out: list[list[str] | None] = [None] * num_items
    for item, steps in zip(ids.tolist(), table.column(column).to_pylist(), strict=True):
        out[item] = steps
    return out


def tag_centroids(embeddings: np.ndarray, tags: TagSet) -> list[np.ndarray]:
    """Per level [T_l x d]: the unit-norm mean embedding of each tag's items.

    These stand in for the tag-text embeddings of HiD-VAE Eq. 5: they live in
    the same space as the item embeddings, whatever encoder made them, and
    need no text encoder in the tokenizer stage.
    """
    out = []
    for level in range(tags.levels):
        ids = tags.ids[:, level]
        valid = ids >= 0
        sums = np.zeros((tags.sizes[level], embeddings.shape[1]), dtype=np.float64)
        np.add.at(sums, ids[valid], embeddings[valid])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        out.append((sums / np.maximum(norms, 1e-12)).astype(np.float32))
    return out


def majority_tags(codes: np.ndarray, tags: TagSet) -> tuple[list[list[str]], list[float]]:
    """Read every SID level through the tags: ([N][L] text, [Lt] purity).

    Level l's text of an item is the majority tag (level l) among the items
    sharing its first l+1 codes, "" when none of them is tagged or l >= Lt;
    so a SID reads as a path, "Skin Care → Face → Serums". Purity at level l:
    the share of tagged items whose own tag is that majority, i.e. how well
    the code prefix alone predicts the tag (comparable across learners).
    """
    codes = np.asarray(codes)
    n, levels = codes.shape
    text = [[""] * levels for _ in range(n)]
    purity: list[float] = []
    for level in range(min(levels, tags.levels)):
        _, group = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
        group = group.reshape(-1)
        tag = tags.ids[:, level]
        valid = tag >= 0
        size = tags.sizes[level]
        pairs, counts = np.unique(group[valid] * size + tag[valid], return_counts=True)
        pair_group, pair_tag = pairs // size, pairs % size
        # Most frequent tag first within each group; ties go to the lower class id.
        order = np.lexsort((pair_tag, -counts, pair_group))
        first = np.r_[True, pair_group[order][1:] != pair_group[order][:-1]]
        majority = np.full(group.max() + 1, -1, dtype=np.int64)
        majority[pair_group[order][first]] = pair_tag[order][first]
        item_majority = majority[group]
        purity.append(float((item_majority[valid] == tag[valid]).mean()) if valid.any() else 0.0)
        names = tags.text[level]
        for item in np.flatnonzero(item_majority >= 0).tolist():
            text[item][level] = names[item_majority[item]]
    return text, purity
