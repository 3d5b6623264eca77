"""SID prefix labels in columnar form: `path()` against a plain dict built here, one
prefix at a time, on small random tables with colliding SIDs; the parquet format
round trip; files of the format before it; bad files."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.data._errors import DataError
from sidrec.data.sid_labels import (
    PrefixLabel,
    compute_prefix_labels,
    read_prefix_labels,
    write_prefix_labels,
)
from sidrec.data.sids import disambiguate

WORDS = ["red", "nail", "polish", "hair", "dryer", "brush", "lip", "gloss", "oz", "the",
         "set", "matte", "serum", "cream", "a", "mini", "x-ray", "it's"]  # fmt: skip
CATEGORIES = ["Beauty", "Makeup", "Nails", "Hair", "Tools", "Lips", ""]
STOP = {"and", "the", "for", "with", "from", "pack", "set", "new", "free", "one", "two", "oz",
        "fl", "ounce", "ounces", "count", "size", "inch", "inches", "pcs", "piece", "pieces",
        "each", "per", "you", "your", "our", "all", "not", "are", "its", "this", "that", "ml"}  # fmt: skip


def _catalog(seed: int, n: int = 160):
    """Random SIDs over small codebooks (many items share a learned SID), titles,
    category paths (some empty or short), tags (some blank)."""
    rng = np.random.default_rng(seed)
    learned = np.stack([rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 3, n)], 1)
    codes = np.concatenate([learned, disambiguate(learned)[:, None]], axis=1)
    titles = [" ".join(rng.choice(WORDS, rng.integers(0, 6))).title() for _ in range(n)]
    titles[0] = None  # a missing title reads as no words
    categories = [[str(c) for c in rng.choice(CATEGORIES, rng.integers(0, 4))] for _ in range(n)]
    tags = [[str(rng.choice(["", "", "Skincare", "Tools"])) for _ in range(3)] for _ in range(n)]
    return codes, titles, categories, tags


def _reference(codes, titles, categories, tags, learned_levels):
    """Every prefix -> its label, one prefix at a time (the module docstring's rules)."""
    n = len(codes)
    words = [
        {w for w in re.findall(r"[a-z][a-z'\-]*[a-z]", (t or "").lower())
         if len(w) >= 3 and w not in STOP}
        for t in titles
    ]  # fmt: skip
    vocab = sorted(set().union(*words))
    df = np.array([sum(w in ws for ws in words) for w in vocab])
    idf = dict(zip(vocab, np.log(n / np.maximum(df, 1)).tolist(), strict=True))
    out = {}
    for level in range(codes.shape[1]):
        under: dict[tuple, list[int]] = {}
        for item, sid in enumerate(codes.tolist()):
            under.setdefault(tuple(sid[: level + 1]), []).append(item)
        for prefix, members in under.items():
            if level >= learned_levels:
                out[prefix] = PrefixLabel("(disambiguation)", (), len(members))
                continue
            texts = Counter()
            for i in members:
                tag = tags[i][level] if tags else ""
                path = categories[i]
                text = tag or (str(path[min(level, len(path) - 1)]) if path else "")
                if text:
                    texts[text] += 1
            category = min(texts, key=lambda t: (-texts[t], t)) if texts else ""
            freq = Counter(w for i in members for w in words[i])
            score = {w: c / len(members) * idf[w] for w, c in freq.items()}
            top = sorted(freq, key=lambda w: (-score[w], -freq[w], w))[:3]
            out[prefix] = PrefixLabel(category, tuple(top), len(members))
    return out


def _agree(labels, reference, codes, seed):
    """path() equals the reference's label per code, for every catalog SID and for
    SIDs leaving the catalog at each depth; so do len() and by_prefix."""
    assert len(labels) == len(reference)
    assert labels.by_prefix == reference
    empty = PrefixLabel("", (), 0)
    rng = np.random.default_rng(seed)
    probes = [*codes.tolist(), *rng.integers(-1, 6, size=(300, codes.shape[1])).tolist(),
              [1 << 40, 0], [0, 0, 0, 99], [0], list(codes[0]) + [0]]  # fmt: skip
    for sid in probes:
        want = [reference.get(tuple(sid[: i + 1]), empty) for i in range(len(sid))]
        assert labels.path(sid) == want, sid
        assert [lab.text for lab in labels.path(np.asarray(sid))] == [lab.text for lab in want]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_path_matches_a_dict_built_prefix_by_prefix(seed, tmp_path):
    codes, titles, categories, tags = _catalog(seed)
    for tag_text in (None, tags):
        reference = _reference(codes, titles, categories, tag_text, learned_levels=3)
        labels = compute_prefix_labels(codes, titles, categories, tag_text, learned_levels=3)
        assert labels.suffix and len(labels.levels) == 3  # the disambiguation level: not stored
        _agree(labels, reference, codes, seed)
        write_prefix_labels(tmp_path / "labels.parquet", labels)
        _agree(read_prefix_labels(tmp_path / "labels.parquet"), reference, codes, seed)
    # categories as arrow (what bundles pass), learned levels only
    arrow = pa.array(categories, pa.list_(pa.string()))
    reference = _reference(codes[:, :3], titles, categories, None, learned_levels=3)
    _agree(compute_prefix_labels(codes[:, :3], titles, arrow), reference, codes[:, :3], seed)


def test_a_disambiguation_level_that_is_not_dense_is_stored():
    codes, titles, categories, _ = _catalog(3, n=40)  # 40 items, 36 learned SIDs: collisions
    codes[:, 3] *= 2  # 0, 2, 4, ...: the code alone no longer says whether the SID exists
    labels = compute_prefix_labels(codes, titles, categories, learned_levels=3)
    assert not labels.suffix and len(labels.levels) == 4
    _agree(labels, _reference(codes, titles, categories, None, 3), codes, 3)


def test_files_of_the_format_before_still_load(tmp_path):
    codes, titles, categories, tags = _catalog(4)
    reference = _reference(codes, titles, categories, tags, learned_levels=3)
    rows = list(reference.items())
    old = pa.table(
        {
            "prefix": pa.array([list(p) for p, _ in rows], pa.list_(pa.int32())),
            "category": pa.array([lab.category for _, lab in rows], pa.string()),
            "terms": pa.array([list(lab.terms) for _, lab in rows], pa.list_(pa.string())),
            "items": pa.array([lab.items for _, lab in rows], pa.int32()),
        }
    )  # fmt: skip  (as write_prefix_labels wrote them: a row per prefix, any order)
    pq.write_table(old.take(np.random.default_rng(0).permutation(len(rows))), tmp_path / "o.pq")
    labels = read_prefix_labels(tmp_path / "o.pq")
    assert labels.suffix
    _agree(labels, reference, codes, 4)


def test_bad_files_say_which_file_and_what(tmp_path):
    pq.write_table(pa.table({"prefix": pa.array([[0]], pa.list_(pa.int32()))}), tmp_path / "a.pq")
    with pytest.raises(DataError, match=r"a\.pq.*missing columns"):
        read_prefix_labels(tmp_path / "a.pq")
    orphan = pa.table({
        "prefix": pa.array([[0], [1, 2]], pa.list_(pa.int32())),
        "category": ["x", "y"], "terms": pa.array([[], []], pa.list_(pa.string())),
        "items": pa.array([1, 1], pa.int32()),
    })  # fmt: skip
    pq.write_table(orphan, tmp_path / "b.pq")
    with pytest.raises(DataError, match=r"b\.pq.*no label for its first 1 codes"):
        read_prefix_labels(tmp_path / "b.pq")
    with pytest.raises(ValueError, match="codes must be >= 0"):
        compute_prefix_labels(np.array([[0, -1]]), ["t"], [["c"]])


def test_labels_take_a_few_dozen_bytes_a_prefix():
    codes, titles, categories, tags = _catalog(5, n=2000)
    labels = compute_prefix_labels(codes, titles, categories, tags, learned_levels=3)
    # keys 8 + category 4 + terms 12 + items 4 bytes, plus the string tables
    assert labels.nbytes < 40 * len(labels)
