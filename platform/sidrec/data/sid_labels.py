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

At 10 M items there are tens of millions of prefixes, so `PrefixLabels` keeps
them in numpy arrays, one sorted level per prefix length (`_label_table`: ~30
bytes a prefix, `path` one binary search per code), the disambiguation level is
answered rather than stored, and sid_labels.parquet is read column by column
(`_label_io`, which also reads the one-row-per-prefix files of older bundles).

    labels = compute_prefix_labels(table.full_codes(), titles, categories, table.tags)
    write_prefix_labels(folder / "sid_labels.parquet", labels)
    [level0, level1, level2] = labels.path([23, 128, 141])   # PrefixLabel per code
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from sidrec.data._label_io import read_prefix_labels, write_prefix_labels
from sidrec.data._label_table import (
    DISAMBIGUATION,
    NUM_TERMS,
    LabelLevel,
    PrefixLabel,
    PrefixLabels,
    check_key_bits,
    code_width,
    drop_dense_suffix,
)

__all__ = [
    "PrefixLabel",
    "PrefixLabels",
    "compute_prefix_labels",
    "read_prefix_labels",
    "write_prefix_labels",
]

# Words that say nothing about a product group (plus every word under 3 letters).
_STOPWORDS = frozenset(
    "and the for with from pack set new free one two oz fl ounce ounces count size "
    "inch inches pcs piece pieces each per you your our all not are its this that ml".split()
)
_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]")


def compute_prefix_labels(
    codes: np.ndarray,
    titles: list[str],
    categories: list[list[str]] | pa.Array,
    tags: list[list[str]] | None = None,
    learned_levels: int | None = None,
) -> PrefixLabels:
    """codes: [N x L'] full SIDs (row i = item i), codes >= 0; titles: per item;
    categories: per item its category path (lists, or an arrow list<string> array);
    tags: [N][L] the SID table's per-level tag text ("" unknown), or None;
    learned_levels: L, when codes carries a disambiguation level after them.

    Vectorised over prefixes and items; only the title tokenisation loops."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N x L], got shape {codes.shape}")
    n, depth = codes.shape
    if len(titles) != n or len(categories) != n or (tags is not None and len(tags) not in (0, n)):
        raise ValueError(
            f"codes has {n} items, titles {len(titles)}, categories {len(categories)}"
            + (f", tags {len(tags)}" if tags is not None else "")
        )
    learned = depth if learned_levels is None else min(learned_levels, depth)
    keys, widths, rows = _prefix_rows(codes)
    words, vocab = _title_words(titles)
    idf = np.log(n / np.maximum(np.asarray(words.sum(axis=0)).ravel(), 1))
    alphabetical = np.argsort(np.argsort(np.asarray(vocab, dtype=object)))
    texts, text_ids = _level_texts(categories, tags, learned)
    marker = len(texts) + 1  # the category id of "(disambiguation)"
    levels: list[LabelLevel] = [None] * depth  # type: ignore[list-item]
    counts = None  # [prefixes x vocab] items with the word, of the level below
    for level in reversed(range(depth)):
        size = len(keys[level])
        items = np.bincount(rows[level], minlength=size).astype(np.int32)
        if level >= learned:
            category = np.full(size, marker, np.int32)
            terms = np.full((size, NUM_TERMS), -1, np.int32)
        else:
            counts = _word_counts(rows[level], size, words, keys, widths, level, counts)
            category = _majority(rows[level], size, text_ids[:, level], len(texts)) + 1
            terms = _top_terms(counts, items, idf, alphabetical)
        levels[level] = LabelLevel(keys[level], widths[level], category.astype(np.int32),
                                   terms, items)  # fmt: skip
    strings = pa.array(["", *texts, DISAMBIGUATION], pa.string())
    levels, suffix = drop_dense_suffix(levels, strings)
    return PrefixLabels(levels, strings, pa.array(vocab, pa.string()), suffix)


def _prefix_rows(codes: np.ndarray) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """Per level: the sorted distinct prefix keys [G] (see `_label_table`), the code
    width, and each item's row among them [N]."""
    keys, widths, rows = [], [], []
    row = np.zeros(len(codes), np.uint64)
    for level in range(codes.shape[1]):
        width = code_width(codes[:, level])
        check_key_bits(len(keys[-1]) if keys else 1, width, level)
        item_keys = (row << np.uint64(width)) | codes[:, level].astype(np.uint64)
        level_keys, inverse = np.unique(item_keys, return_inverse=True)
        row = inverse.reshape(-1).astype(np.uint64)
        keys.append(level_keys)
        widths.append(width)
        rows.append(inverse.reshape(-1))
    return keys, widths, rows


def _word_counts(
    rows: np.ndarray, size: int, words: sp.csr_matrix, keys: list[np.ndarray],
    widths: list[int], level: int, below: sp.csr_matrix | None,
) -> sp.csr_matrix:  # fmt: skip
    """[size x V] items under each prefix of `level` whose title has the word: summed
    from the items at the deepest learned level, else from the level below's counts."""
    if below is None:
        members = sp.csr_matrix(
            (np.ones(len(rows), np.int32), (rows, np.arange(len(rows)))), shape=(size, len(rows))
        )
        return (members @ words).tocsr()
    parents = (keys[level + 1] >> np.uint64(widths[level + 1])).astype(np.int64)
    up = sp.csr_matrix(
        (np.ones(len(parents), np.int32), (parents, np.arange(len(parents)))),
        shape=(size, len(parents)),
    )
    return (up @ below).tocsr()


def _title_words(titles: list[str]) -> tuple[sp.csr_matrix, list[str]]:
    """[N x V] binary item-word matrix (int32) over the titles' words, and the vocabulary."""
    ids: dict[str, int] = {}  # every word seen -> its column, -1 for a dropped word
    vocab: list[str] = []
    cols: list[int] = []
    ends = np.empty(len(titles) + 1, np.int64)
    ends[0] = 0
    for item, title in enumerate(titles):
        for word in set(_WORD.findall(title.lower() if title else "")):
            col = ids.get(word)
            if col is None:
                col = -1 if len(word) < 3 or word in _STOPWORDS else len(vocab)
                ids[word] = col
                if col >= 0:
                    vocab.append(word)
            if col >= 0:
                cols.append(col)
        ends[item + 1] = len(cols)
    matrix = sp.csr_matrix(
        (np.ones(len(cols), np.int32), np.asarray(cols, np.int64), ends),
        shape=(len(titles), len(vocab)),
    )
    return matrix, vocab


def _top_terms(
    counts: sp.csr_matrix, sizes: np.ndarray, idf: np.ndarray, alphabetical: np.ndarray
) -> np.ndarray:
    """[G x NUM_TERMS] int32: per row (prefix) of counts [G x V], the word ids of highest
    score share x idf, -1 padded; ties: the more frequent word, then alphabetical."""
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    cols, freq = counts.indices, counts.data
    score = freq / sizes[rows] * idf[cols]
    order = np.lexsort((alphabetical[cols], -freq, -score, rows))
    # Sorted by row first, so row r's entries start at indptr[r] in `order` too.
    rank = np.arange(len(order)) - counts.indptr[rows[order]]
    kept = rank < NUM_TERMS
    out = np.full((counts.shape[0], NUM_TERMS), -1, np.int32)
    out[rows[order[kept]], rank[kept]] = cols[order[kept]]
    return out


def _level_texts(
    categories: list[list[str]] | pa.Array, tags: list[list[str]] | None, levels: int
) -> tuple[list[str], np.ndarray]:
    """The distinct texts (sorted) and per item and level [N x levels] the id of the
    text its code should read as: its tag where non-empty, else its category at that
    depth (an item with a shorter path counts with its deepest step); -1 unknown."""
    # A null category reads "None", as str(None) did before these were arrays.
    cat_offsets, cat_values = _lists(categories, "None")
    parts = [cat_values]
    if tags is not None and len(tags):
        tag_offsets, tag_values = _lists(tags, "")
        parts.append(tag_values)
    encoded = pa.chunked_array(parts, pa.string()).combine_chunks().dictionary_encode()
    strings = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    known = np.flatnonzero(strings != "")
    known = known[np.argsort(strings[known], kind="stable")]
    rank = np.full(len(strings), -1, np.int64)
    rank[known] = np.arange(len(known))
    value_ids = rank[encoded.indices.to_numpy()]
    cat_ids, tag_ids = value_ids[: len(cat_values)], value_ids[len(cat_values) :]
    out = np.empty((len(cat_offsets) - 1, levels), np.int64)
    for level in range(levels):  # a loop over levels, not items
        out[:, level] = _pick(cat_offsets, cat_ids, level, deepest=True)
        if len(parts) > 1:
            tag = _pick(tag_offsets, tag_ids, level, deepest=False)
            out[:, level] = np.where(tag >= 0, tag, out[:, level])
    return strings[known].tolist(), out


def _lists(lists, null_value: str) -> tuple[np.ndarray, pa.Array]:
    """offsets [N+1] and values of a list<string> column (null lists empty)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    if not isinstance(lists, pa.Array):
        lists = pa.array(lists, pa.list_(pa.string()))
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    return offsets, pc.list_flatten(lists).cast(pa.string()).fill_null(null_value)


def _pick(offsets: np.ndarray, ids: np.ndarray, level: int, deepest: bool) -> np.ndarray:
    """[N] per item the id at position `level` of its list (or its last one when the
    list is shorter and deepest, else -1); -1 for an empty list."""
    lengths = np.diff(offsets)
    pos = np.minimum(level, lengths - 1) if deepest else np.where(level < lengths, level, -1)
    valid = pos >= 0
    out = np.full(len(lengths), -1, np.int64)
    out[valid] = ids[offsets[:-1][valid] + pos[valid]]
    return out


def _majority(group: np.ndarray, num_groups: int, text: np.ndarray, num_texts: int) -> np.ndarray:
    """Per group, its most frequent known text id (ties: the lower id, i.e. alphabetical;
    ids are alphabetical ranks); -1 if none. text: [N] ids, -1 unknown."""
    best = np.full(num_groups, -1, np.int64)
    known = text >= 0
    if not known.any():
        return best
    pairs, counts = np.unique(group[known] * num_texts + text[known], return_counts=True)
    pair_group, pair_text = np.divmod(pairs, num_texts)
    order = np.lexsort((pair_text, -counts, pair_group))
    first = np.r_[True, pair_group[order][1:] != pair_group[order][:-1]]
    best[pair_group[order][first]] = pair_text[order][first]
    return best
