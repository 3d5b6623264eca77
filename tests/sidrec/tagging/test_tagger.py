"""Eq. 3 + Eq. 4 in one process on real Beauty items: MiniLM retrieval, a tiny random LM."""

from __future__ import annotations

import numpy as np
import pytest

from sidrec.embed.text import TextTemplate
from sidrec.tagging import (
    TagConfig,
    Tagger,
    hf_lm,
    pool_from_paths,
    render_prompt,
    retrieve_candidates,
)


@pytest.fixture(scope="module")
def catalog_pool(beauty_root):
    import pyarrow.parquet as pq

    paths = pq.read_table(beauty_root / "catalog" / "items.parquet").column("categories")
    return pool_from_paths(paths.to_pylist(), levels=3, source="items.parquet")


@pytest.fixture(scope="module")
def tagger(tiny_lm, catalog_pool):
    cfg = TagConfig(lm=hf_lm(str(tiny_lm), batch_size=64), levels=3, top_k=3)
    return Tagger(cfg, catalog_pool)


@pytest.fixture(scope="module")
def texts(beauty_items):
    return TextTemplate.parse("{title}").render(beauty_items.slice(0, 40))


def test_children_are_chosen_only_under_the_chosen_parent(tagger, catalog_pool, texts):
    paths, logps = tagger.tag(texts)
    prefixes = {
        tuple(catalog_pool.path(level, j))
        for level in range(3)
        for j in range(catalog_pool.sizes[level])
    }
    for path, scores in zip(paths, logps, strict=True):
        assert 1 <= len(path) <= 3 and len(scores) == len(path)
        # Every chosen path is a real root-to-node path of the tree: no child was
        # taken from under a parent other than the one chosen at the level above.
        for level in range(len(path)):
            assert tuple(path[: level + 1]) in prefixes
        assert all(s <= 0 for s in scores)
    # Leaves stop a path early: an item under a 2-level branch keeps 2 tags.
    leaf_parents = {p[:2] for p in prefixes if len(p) == 2} - {
        p[:2] for p in prefixes if len(p) == 3
    }
    assert all(tuple(p[:2]) in leaf_parents for p in paths if len(p) == 2)


def test_chooser_takes_the_candidate_with_the_highest_log_likelihood(tagger, catalog_pool, texts):
    paths, logps = tagger.tag(texts[:8])
    vectors = tagger.encoder.encode(texts[:8])
    cands = retrieve_candidates(vectors, tagger.tag_vectors[0], catalog_pool, 0, None, k=3)
    names = catalog_pool.names[0]
    for text, row, path, scores in zip(texts, cands, paths, logps, strict=False):
        options = [names[j] for j in row]
        lp = tagger.scorer.score([render_prompt(text, [], 0, options)], [options])[0]
        assert path[0] == options[int(np.argmax(lp))]
        assert scores[0] == pytest.approx(lp.max())
