"""A SID table for tests and timings until a tokenizer artifact exists (not a tokenizer).

Levels 0 and 1 follow the item's category path (so codes and tag text agree,
which exercises hierarchy-aware embeddings), level 2 is random; colliding
items get the TIGER disambiguation suffix. Loaded by path from other test
folders: `load_sid_helpers()` in tests/jobs/test_train_recommender.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sidrec.data import load_items
from sidrec.data.sids import SidTable, disambiguate, write_sid_table


def category_sid_table(root: str | Path, sizes=(8, 64, 256), seed: int = 0) -> SidTable:
    items = load_items(root)
    paths = items.column("categories").to_pylist()
    rng = np.random.default_rng(seed)
    n = len(paths)
    codes = np.zeros((n, len(sizes)), dtype=np.int64)
    tags = [["" for _ in sizes] for _ in range(n)]
    for level, k in enumerate(sizes[:-1]):
        prefixes = [" > ".join(p[: level + 1]) if len(p) > level else "" for p in paths]
        vocab = {name: i for i, name in enumerate(sorted(set(prefixes)))}
        codes[:, level] = [vocab[p] % k for p in prefixes]
        for i, p in enumerate(paths):
            tags[i][level] = p[level] if len(p) > level else ""
    codes[:, -1] = rng.integers(0, sizes[-1], n)
    return SidTable(codes, disambiguate(codes), list(sizes), tags=tags)


def write_category_sids(
    root: str | Path, name: str = "test-categories", sizes=(8, 64, 256)
) -> Path:
    path = Path(root) / "sids" / f"{name}.parquet"
    if not path.exists():
        write_sid_table(path, category_sid_table(root, sizes), {"learner": "test-categories"})
    return path
