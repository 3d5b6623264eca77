"""What each code of a semantic ID stands for: one label per SID prefix.

HiD-VAE (§4.2.7, case study §6.3.3) reads a generated SID as a path,
"Skincare > Treatments > Serums": its codes are trained to predict the item's
tag at each level, so the SID table it writes carries that tag text per code
(`sidrec.data.sids`, column `tags`). RQ-VAE (TIGER §3.1), RQ-KMeans and LAMIA
codes have no meaning of their own. Here every prefix of every SID is read
through the items under it, once, at bundle time:

- category: the SID table's tag text for that level where it has one (HiD-VAE's
  tags; the tokenizers also write the majority catalog category there), else
  the majority catalog category at that depth among the items under the prefix
  (an item with a shorter path counts with its deepest step);
- terms: the 3 title words most over-represented under the prefix, scored
  tf-idf style: (share of the prefix's items whose title has the word) x
  log(N / items in the catalog whose title has it);
- items: how many catalog items share the prefix.

A disambiguation code (the level `SidTable.full_codes` appends after the
learned ones when two items would share a SID) carries no meaning: it reads
"(disambiguation)".

    labels = compute_prefix_labels(table.full_codes(), titles, categories, table.tags)
    write_prefix_labels(folder / "sid_labels.parquet", labels)
    [level0, level1, level2] = labels.path([23, 128, 141])   # PrefixLabel per code
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from sidrec.artifacts import atomic_path
from sidrec.data._errors import DataError

__all__ = [
    "PrefixLabel",
    "PrefixLabels",
    "compute_prefix_labels",
    "read_prefix_labels",
    "write_prefix_labels",
]

LABELS_SCHEMA = pa.schema(
    [
        ("prefix", pa.list_(pa.int32())),
        ("category", pa.string()),
        ("terms", pa.list_(pa.string())),
        ("items", pa.int32()),
    ]
)
NUM_TERMS = 3
DISAMBIGUATION = "(disambiguation)"
# Words that say nothing about a product group (plus every word under 3 letters).
_STOPWORDS = frozenset(
    "and the for with from pack set new free one two oz fl ounce ounces count size "
    "inch inches pcs piece pieces each per you your our all not are its this that ml".split()
)
_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]")


class PrefixLabel(NamedTuple):
    """What one SID prefix stands for (see the module docstring). A NamedTuple: a
    catalog has tens of thousands of prefixes, built at every load of an older bundle."""

    category: str
    terms: tuple[str, ...]
    items: int

    @property
    def text(self) -> str:
        """One line for display: "Nail Polish: opi, lacquer, shimmer"."""
        words = ", ".join(self.terms)
        if self.category and words:
            return f"{self.category}: {words}"
        return self.category or words


@dataclass
class PrefixLabels:
    """by_prefix: every prefix of every SID (a tuple of codes) -> its label."""

    by_prefix: dict[tuple[int, ...], PrefixLabel]

    def path(self, sid) -> list[PrefixLabel]:
        """One label per code of sid (its prefix up to that code); a prefix the table
        lacks (a SID not in the catalog) reads as empty."""
        codes = tuple(int(c) for c in sid)
        empty = PrefixLabel("", (), 0)
        return [self.by_prefix.get(codes[: i + 1], empty) for i in range(len(codes))]

    def __len__(self) -> int:
        return len(self.by_prefix)


def compute_prefix_labels(
    codes: np.ndarray,
    titles: list[str],
    categories: list[list[str]],
    tags: list[list[str]] | None = None,
    learned_levels: int | None = None,
) -> PrefixLabels:
    """codes: [N x L'] full SIDs (row i = item i); titles, categories: per item;
    tags: [N][L] the SID table's per-level tag text ("" unknown), or None;
    learned_levels: L, when codes carries a disambiguation level after them."""
    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    if len(titles) != n or len(categories) != n:
        raise ValueError(f"codes has {n} items, titles {len(titles)}, categories {len(categories)}")
    words, vocab = _title_words(titles)
    idf = np.log(n / np.maximum(np.asarray(words.sum(axis=0)).ravel(), 1))
    alphabetical = np.argsort(np.argsort(np.asarray(vocab, dtype=object)))
    out: dict[tuple[int, ...], PrefixLabel] = {}
    for level in range(levels):
        prefixes, group = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
        group = group.reshape(-1)
        sizes = np.bincount(group, minlength=len(prefixes))
        if learned_levels is not None and level >= learned_levels:
            for prefix, size in zip(map(tuple, prefixes.tolist()), sizes.tolist(), strict=True):
                out[prefix] = PrefixLabel(DISAMBIGUATION, (), size)
            continue
        category = _majority(group, len(prefixes), _category_at(level, categories, tags))
        members = sp.csr_matrix(
            (np.ones(n, np.float64), (group, np.arange(n))), shape=(len(prefixes), n)
        )
        counts = (members @ words).tocsr()  # [prefixes x vocab] items with the word
        terms = _top_terms(counts, sizes, idf, alphabetical)
        for prefix, cat, top, size in zip(
            map(tuple, prefixes.tolist()), category, terms, sizes.tolist(), strict=True
        ):
            out[prefix] = PrefixLabel(cat, tuple([vocab[w] for w in top]), size)
    return PrefixLabels(out)


def _title_words(titles: list[str]) -> tuple[sp.csr_matrix, list[str]]:
    """[N x V] binary item-word matrix over the titles' words, and the vocabulary."""
    index: dict[str, int] = {}
    rows, cols = [], []
    for item, title in enumerate(titles):
        for word in set(_WORD.findall((title or "").lower())):
            if len(word) < 3 or word in _STOPWORDS:
                continue
            rows.append(item)
            cols.append(index.setdefault(word, len(index)))
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, cols)), shape=(len(titles), len(index))
    )
    return matrix, list(index)


def _top_terms(
    counts: sp.csr_matrix, sizes: np.ndarray, idf: np.ndarray, alphabetical: np.ndarray
) -> list[list[int]]:
    """Per row (prefix) of counts [G x V], the NUM_TERMS word ids of highest score
    share x idf; ties: the more frequent word, then alphabetical (stable output)."""
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    cols, freq = counts.indices, counts.data
    score = freq / sizes[rows] * idf[cols]
    order = np.lexsort((alphabetical[cols], -freq, -score, rows))
    # Sorted by row first, so row r's entries start at indptr[r] in `order` too.
    rank = np.arange(len(order)) - counts.indptr[rows[order]]
    kept = order[rank < NUM_TERMS]
    out: list[list[int]] = [[] for _ in range(counts.shape[0])]
    for row, col in zip(rows[kept].tolist(), cols[kept].tolist(), strict=True):
        out[row].append(col)
    return out


def _category_at(
    level: int, categories: list[list[str]], tags: list[list[str]] | None
) -> list[str]:
    """Per item, the text its level-`level` code should read as ("" unknown)."""
    out = []
    for item, path in enumerate(categories):
        tag = tags[item][level] if tags and level < len(tags[item]) else ""
        if tag:
            out.append(tag)
        elif path:
            out.append(str(path[min(level, len(path) - 1)]))
        else:
            out.append("")
    return out


def _majority(group: np.ndarray, num_groups: int, text: list[str]) -> list[str]:
    """Per group, its most frequent non-empty text (ties: alphabetical); "" if none."""
    keys, codes = np.unique(np.asarray(text, dtype=object).astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    known = np.asarray([t != "" for t in text], dtype=bool)
    best = [""] * num_groups
    if not known.any():
        return best
    pairs, counts = np.unique(group[known] * len(keys) + codes[known], return_counts=True)
    pair_group, pair_key = pairs // len(keys), pairs % len(keys)
    order = np.lexsort((pair_key, -counts, pair_group))
    first = np.r_[True, pair_group[order][1:] != pair_group[order][:-1]]
    for g, k in zip(
        pair_group[order][first].tolist(), pair_key[order][first].tolist(), strict=True
    ):
        best[g] = str(keys[k])
    return best


def write_prefix_labels(path: str | Path, labels: PrefixLabels) -> None:
    """One parquet row per prefix (temp file + rename)."""
    rows = list(labels.by_prefix.items())
    table = pa.table(
        {
            "prefix": pa.array([list(p) for p, _ in rows], pa.list_(pa.int32())),
            "category": pa.array([lab.category for _, lab in rows], pa.string()),
            "terms": pa.array([list(lab.terms) for _, lab in rows], pa.list_(pa.string())),
            "items": pa.array([lab.items for _, lab in rows], pa.int32()),
        },
        schema=LABELS_SCHEMA,
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_prefix_labels(path: str | Path) -> PrefixLabels:
    path = Path(path)
    table = pq.read_table(path)
    missing = [f.name for f in LABELS_SCHEMA if f.name not in table.column_names]
    if missing:
        raise DataError(f"missing columns {missing}", file=path)
    prefixes = table.column("prefix").to_pylist()
    categories = table.column("category").to_pylist()
    terms = table.column("terms").to_pylist()
    items = table.column("items").to_pylist()
    return PrefixLabels(
        {
            tuple(p): PrefixLabel(c or "", tuple(t or ()), int(k))
            for p, c, t, k in zip(prefixes, categories, terms, items, strict=True)
        }
    )
