"""The columnar store behind `sidrec.data.sid_labels.PrefixLabels`.

A catalog of N items has about N x L SID prefixes. A Python dict from prefix
tuple to label costs some 300 bytes a prefix (several GiB per Serve replica at
10 M items) and minutes to build, so the labels live in numpy arrays instead,
one `LabelLevel` per prefix length, each sorted by prefix:

    key of a prefix = (row of its parent prefix one level up << width) | its last code

(row 0 stands for the empty parent at level 0). The key always fits 64 bits,
whatever the codebook sizes: a parent row is below the number of prefixes and a
code below 2^width, and `check_key_bits` says so clearly when they ever would
not. `path(sid)` is one `np.searchsorted` per code.

A disambiguation level (`SidTable.full_codes` appends 0, 1, 2, ... over the items
sharing a learned SID, `sidrec.data.sids.disambiguate`) is not stored: each of
its labels reads "(disambiguation)" over 1 item, and the code exists exactly
when it is below the item count of the learned SID above it
(`drop_dense_suffix` checks that before it drops one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DISAMBIGUATION",
    "NUM_TERMS",
    "LabelLevel",
    "PrefixLabel",
    "PrefixLabels",
    "check_key_bits",
    "code_width",
    "drop_dense_suffix",
]

NUM_TERMS = 3
DISAMBIGUATION = "(disambiguation)"


class PrefixLabel(NamedTuple):
    """What one SID prefix stands for (see `sidrec.data.sid_labels`)."""

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


_EMPTY = PrefixLabel("", (), 0)
_SUFFIX = PrefixLabel(DISAMBIGUATION, (), 1)


class LabelLevel(NamedTuple):
    """The labels of every prefix of one length; row g of each array is prefix g."""

    keys: np.ndarray  # [G] uint64, ascending: (parent row << width) | last code
    width: int  # bits of the last code
    category: np.ndarray  # [G] int32 into PrefixLabels.categories
    terms: np.ndarray  # [G x NUM_TERMS] int32 into PrefixLabels.vocab, -1 pads
    items: np.ndarray  # [G] int32: catalog items under the prefix

    @property
    def parents(self) -> np.ndarray:
        """[G] int64: each prefix's row one level up."""
        return (self.keys >> np.uint64(self.width)).astype(np.int64)

    @property
    def codes(self) -> np.ndarray:
        """[G] int64: each prefix's last code."""
        return (self.keys & np.uint64((1 << self.width) - 1)).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.category, self.terms, self.items))


@dataclass(eq=False)
class PrefixLabels:
    """The label of every prefix of every SID of a table, columnar (module docstring).

    levels: one LabelLevel per stored prefix length; categories, vocab: the
    category and term strings the levels index into; suffix: whether the SIDs
    carry one more, dense disambiguation level that is answered, not stored."""

    levels: list[LabelLevel]
    categories: pa.StringArray
    vocab: pa.StringArray
    suffix: bool = False

    def path(self, sid) -> list[PrefixLabel]:
        """One label per code of sid (its prefix up to that code); a prefix the table
        lacks (a SID not in the catalog) reads as empty, and so do all below it."""
        codes = [int(c) for c in sid]
        out: list[PrefixLabel] = []
        row = 0
        for depth, code in enumerate(codes):
            if depth == len(self.levels):
                if self.suffix and depth > 0 and 0 <= code < self.levels[-1].items.item(row):
                    out.append(_SUFFIX)
                break
            row = _find(self.levels[depth], row, code)
            if row < 0:
                break
            out.append(self._label(self.levels[depth], row))
        return out + [_EMPTY] * (len(codes) - len(out))

    def __post_init__(self) -> None:
        self._decoders()

    def _decoders(self) -> None:
        # path() runs per request: read strings straight from the arrow buffers
        # (a slice and a decode) rather than through arrow scalars, ~10x faster;
        # categories are few, so a list.
        self._category_text = self.categories.to_pylist()
        vocab = self.vocab
        _, ends, data = vocab.buffers()[:3]
        width = np.int64 if pa.types.is_large_string(vocab.type) else np.int32
        ends = np.frombuffer(ends, width) if ends is not None else np.zeros(1, width)
        self._word_ends = ends[vocab.offset : vocab.offset + len(vocab) + 1]
        self._word_bytes = memoryview(data) if data is not None else memoryview(b"")

    def __getstate__(self) -> dict:
        """Pickled without the memoryview (rebuilt on unpickling)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._decoders()

    def _label(self, level: LabelLevel, row: int) -> PrefixLabel:
        ends, data = self._word_ends, self._word_bytes
        terms = tuple(
            str(data[ends[t] : ends[t + 1]], "utf-8") for t in level.terms[row].tolist() if t >= 0
        )
        category = self._category_text[level.category.item(row)]
        return PrefixLabel(category, terms, level.items.item(row))

    def __len__(self) -> int:
        """How many prefixes have a label (the disambiguation ones included)."""
        stored = sum(len(level.keys) for level in self.levels)
        return stored + (int(self.levels[-1].items.sum()) if self.suffix else 0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and the string tables."""
        strings = self.categories.nbytes + self.vocab.nbytes
        return strings + sum(level.nbytes for level in self.levels)

    def prefix_codes(self) -> list[np.ndarray]:
        """Per stored level l, [G_l x (l+1)] int64: the codes of each prefix, row order."""
        out: list[np.ndarray] = []
        for depth, level in enumerate(self.levels):
            above = out[-1][level.parents] if depth else np.zeros((len(level.keys), 0), np.int64)
            out.append(np.concatenate([above, level.codes[:, None]], axis=1))
        return out

    @property
    def by_prefix(self) -> dict[tuple[int, ...], PrefixLabel]:
        """Every prefix (a tuple of codes) -> its label, as a dict: Python objects per
        prefix, for tests and inspection only (serving calls `path`)."""
        out: dict[tuple[int, ...], PrefixLabel] = {}
        codes = self.prefix_codes()
        for level, prefixes in zip(self.levels, codes, strict=True):
            for row, prefix in enumerate(map(tuple, prefixes.tolist())):
                out[prefix] = self._label(level, row)
        if self.suffix and codes:
            counts = self.levels[-1].items.astype(np.int64)
            parents = np.repeat(codes[-1], counts, axis=0)
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            rank = np.arange(len(parents)) - starts
            for prefix in map(tuple, np.concatenate([parents, rank[:, None]], 1).tolist()):
                out[prefix] = _SUFFIX
        return out


def _find(level: LabelLevel, parent: int, code: int) -> int:
    """The row of the prefix (parent row, code) in level, or -1."""
    if not 0 <= code < 1 << level.width:
        return -1
    key = (parent << level.width) | code
    # A numpy scalar key: with a Python int numpy would search as float (slow, inexact).
    row = int(level.keys.searchsorted(np.uint64(key)))
    return row if row < len(level.keys) and level.keys.item(row) == key else -1


def code_width(codes: np.ndarray) -> int:
    """Bits to hold every code of one level (at least 1); codes must be >= 0."""
    if len(codes) and int(codes.min()) < 0:
        raise ValueError(f"SID codes must be >= 0, got {int(codes.min())}")
    return max(int(codes.max(initial=0)).bit_length(), 1)


def check_key_bits(num_parents: int, width: int, depth: int) -> None:
    """Keys are uint64: a parent row's bits plus the code's must fit in 64."""
    if max(num_parents - 1, 0).bit_length() + width > 64:
        raise ValueError(
            f"SID level {depth}: {num_parents} parent prefixes and {width}-bit codes "
            "do not fit one 64-bit key; codes this large are not SID codes"
        )


def drop_dense_suffix(
    levels: list[LabelLevel], categories: pa.StringArray
) -> tuple[list[LabelLevel], bool]:
    """levels without its last one when that one is a dense disambiguation level
    (every label "(disambiguation)" over 1 item, no terms, and under each prefix
    above the codes 0 .. items-1): `PrefixLabels.path` answers it exactly from the
    level above. Otherwise levels unchanged, and False."""
    if len(levels) < 2:
        return levels, False
    last, above = levels[-1], levels[-2]
    marker = pc.equal(categories, DISAMBIGUATION).fill_null(False).to_numpy(zero_copy_only=False)
    labelled = (
        bool(marker[last.category].all()) and bool(np.all(last.terms < 0))
        and bool(np.all(last.items == 1))
    )  # fmt: skip
    if not labelled:
        return levels, False
    parents = last.parents
    per_parent = np.bincount(parents, minlength=len(above.keys))
    if not np.array_equal(per_parent, above.items):
        return levels, False
    starts = np.cumsum(per_parent) - per_parent
    if not np.array_equal(last.codes, np.arange(len(parents)) - starts[parents]):
        return levels, False
    return levels[:-1], True
