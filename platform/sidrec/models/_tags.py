"""Tag paths of SID codes, the text behind hierarchy-aware SID embeddings.

A SID table carries, per item, the tag text of each of its L codes (coarse to
fine; "" where unknown). The tag path of code c at level l is the majority,
over the items whose level-l code is c, of "tag_0 > ... > tag_l". The
disambiguation level (when present) has no tag: its rows stay empty.
"""

from __future__ import annotations

from collections import Counter

from sidrec.data.sids import SidTable


def has_tag_text(table: SidTable) -> bool:
    return bool(table.tags) and any(t for row in table.tags for t in row)


def tag_path_texts(table: SidTable) -> list[str]:
    """[V] one string per vocabulary row (level-major, as `offsets[l] + code`)."""
    sizes = table.full_codebook_sizes()
    texts: list[str] = []
    tags = table.tags or [[] for _ in range(table.num_items)]
    for level, k in enumerate(sizes):
        votes: list[Counter] = [Counter() for _ in range(k)]
        if level < table.num_levels:
            for item, code in enumerate(table.codes[:, level].tolist()):
                path = " > ".join(t for t in tags[item][: level + 1] if t)
                if path:
                    votes[code][path] += 1
        # most_common breaks ties by first insertion: deterministic for a given table.
        texts.extend(v.most_common(1)[0][0] if v else "" for v in votes)
    return texts
