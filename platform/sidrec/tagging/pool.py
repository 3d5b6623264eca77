"""Per-level tag pools: the candidates HiD-VAE's tag generation chooses from.

    pool = pool_from_paths(items.column("categories").to_pylist(), levels=3)   # a tree (Beauty)
    pool = load_taxonomy("yelp_taxonomy.yaml")                                 # a file, tree or flat
    pool.candidates(level=1, parent=0)   # indices of level-1 tags under level-0 tag 0

A pool is a tree when each tag below level 0 has one parent (category paths,
a nested taxonomy); then a child is only ever a candidate under its chosen
parent. A flat pool (a list of tags per level, e.g. Yelp's flat tags sorted
into levels) has no parents: every tag of level l is a candidate at level l.

Taxonomy files (YAML or JSON), two shapes:

    tree:                         levels:
      Restaurants:                  - [Restaurants, Shopping, Nightlife]
        Italian: {}                 - [Italian, Pizza, Bars, Tobacco Shops]
        Pizza: [Neapolitan]
      Shopping: [Tobacco Shops]

(`tree`: nested mappings, a list holds leaves; `levels`: one flat list per level.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.data import DataError

__all__ = ["PATH_SEPARATOR", "TagPool", "load_taxonomy", "pool_from_paths"]

PATH_SEPARATOR = " > "  # as ingest and sidrec.tokenizers.tags join a category path


@dataclass(frozen=True)
class TagPool:
    """names[l][j]: tag j of level l (its own step, "Face"); parents[l][j]: its parent's
    index at level l-1 (-1 at level 0 and everywhere in a flat pool)."""

    names: tuple[tuple[str, ...], ...]
    parents: tuple[tuple[int, ...], ...]
    tree: bool
    source: str = ""

    def __post_init__(self) -> None:
        if not self.names:
            raise DataError("the tag pool is empty (no level)", file=self.source or None)
        for level, names in enumerate(self.names):
            if not names:
                raise DataError(
                    f"the tag pool has no tag at level {level}: lower --levels to {level} "
                    "or supply deeper tags",
                    file=self.source or None,
                    field=f"level {level}",
                )

    @property
    def levels(self) -> int:
        return len(self.names)

    @property
    def sizes(self) -> list[int]:
        return [len(n) for n in self.names]

    def path(self, level: int, index: int) -> list[str]:
        """The steps from level 0 down to tag `index` of `level` (one step in a flat pool)."""
        if not self.tree:
            return [self.names[level][index]]
        steps = []
        while level >= 0:
            steps.append(self.names[level][index])
            index = self.parents[level][index]
            level -= 1
        return steps[::-1]

    def texts(self, level: int) -> list[str]:
        """What retrieval embeds for each tag of `level`: its whole path ("Makeup > Nails"),
        so that "Face" under Skin Care and under Makeup do not embed alike."""
        return [PATH_SEPARATOR.join(self.path(level, j)) for j in range(len(self.names[level]))]

    def candidates(self, level: int, parent: int | None) -> np.ndarray:
        """Indices of level `level`'s tags an item may take, given its chosen parent
        (None or a flat pool: all of them). [c] int64, possibly empty (a leaf parent)."""
        if not self.tree or level == 0 or parent is None:
            return np.arange(len(self.names[level]))
        return np.flatnonzero(np.asarray(self.parents[level]) == parent)

    def identity(self) -> dict[str, Any]:
        return {"names": self.names, "parents": self.parents, "tree": self.tree}


def pool_from_paths(
    paths: list[list[str] | None], levels: int, tree: bool = True, source: str = ""
) -> TagPool:
    """The pool of the first `levels` steps of category paths (coarse -> fine).

    tree: level l's tags are the distinct path prefixes of length l+1 (so one
    name can appear under two parents). flat: the distinct names at step l,
    whatever their parents. Tags keep their order of first appearance.
    """
    names: list[list[str]] = [[] for _ in range(levels)]
    parents: list[list[int]] = [[] for _ in range(levels)]
    index: list[dict[Any, int]] = [{} for _ in range(levels)]
    for path in paths:
        steps = [s.strip() for s in (path or [])]
        parent = -1
        for level in range(min(levels, len(steps))):
            if not steps[level]:
                break
            key = tuple(steps[: level + 1]) if tree else steps[level]
            if key not in index[level]:
                index[level][key] = len(names[level])
                names[level].append(steps[level])
                parents[level].append(parent if tree else -1)
            parent = index[level][key]
    return TagPool(
        names=tuple(map(tuple, names)),
        parents=tuple(map(tuple, parents)),
        tree=tree,
        source=source,
    )


def load_taxonomy(path: str | Path, levels: int | None = None) -> TagPool:
    """A pool from a YAML/JSON taxonomy file (module docstring); DataError names the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError("taxonomy file not found", file=path)
    text = path.read_text()
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as err:  # noqa: BLE001 - any parse error becomes a named DataError
        raise DataError(f"not valid YAML/JSON ({err})", file=path) from None
    if not isinstance(doc, dict) or len({"tree", "levels"} & set(doc)) != 1:
        raise DataError("needs exactly one top-level key: `tree` or `levels`", file=path)
    if "levels" in doc:
        return _flat_pool(doc["levels"], levels, path)
    paths: list[list[str]] = []
    _walk(doc["tree"], [], paths, path, "tree")
    depth = max(len(p) for p in paths) if paths else 0
    return pool_from_paths(paths, levels or depth, tree=True, source=str(path))


def _flat_pool(value: Any, levels: int | None, path: Path) -> TagPool:
    if not isinstance(value, list) or not all(isinstance(v, list) for v in value):
        raise DataError("must be a list of lists of tag names", file=path, field="levels")
    value = value[:levels] if levels else value
    if levels and len(value) < levels:
        raise DataError(
            f"has {len(value)} levels, {levels} asked: lower --levels", file=path, field="levels"
        )
    names = []
    for level, tags in enumerate(value):
        bad = [t for t in tags if not isinstance(t, str) or not t.strip()]
        if bad:
            raise DataError(f"non-text or blank tags {bad!r}", file=path, field=f"levels[{level}]")
        names.append(tuple(dict.fromkeys(t.strip() for t in tags)))
    parents = tuple((-1,) * len(n) for n in names)
    return TagPool(names=tuple(names), parents=parents, tree=False, source=str(path))


def _walk(node: Any, prefix: list[str], out: list[list[str]], path: Path, key: str) -> None:
    """Collect every root-to-node path of a nested mapping / leaf-list tree."""
    if node is None:
        return
    if isinstance(node, list):
        node = {leaf: None for leaf in node}
    if not isinstance(node, dict):
        raise DataError(
            f"expected a mapping or a list of tags, got {type(node).__name__}",
            file=path,
            field=key,
        )
    for name, child in node.items():
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"tag {name!r} is not a non-blank string", file=path, field=key)
        steps = [*prefix, name.strip()]
        out.append(steps)
        _walk(child, steps, out, path, f"{key}.{name}")
