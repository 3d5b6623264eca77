"""Retrieval-only accuracy of HiD-VAE's tag candidates (Eq. 3) on Amazon Beauty.

    SIDREC_DATA_DIR=/path/to/datasets python bench/tag_retrieval.py
    python bench/tag_retrieval.py --data-dir /path/to/datasets --ks 1 3 5 10 --template "Title: {title}\\nBrand: {brand}"

Beauty's category paths are the ground truth and also the pool (a 3-level
tree). Items and tag paths are embedded with the packaged MiniLM; per level l
it reports recall@k = share of items (with a path of > l steps) whose true
level-l tag is among the k retrieved candidates:
- `level pool`: retrieved among every level-l tag (no restriction);
- `under true parent`: among the children of the item's true level-(l-1) tag
  (the tree restriction, given a correct choice above);
- `greedy top-1 path`: no LM at all, each level's top-1 under the previous
  level's top-1; the share of items whose whole path to level l is right.
The LM's choice among the candidates (Eq. 4) needs a real LLM (GPU cluster)
and is not measured here: with a random tiny LM it would be a random pick.
Figures: docs/RESULTS_tags.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from sidrec.data import ensure_ingested
from sidrec.embed import build_encoder, minilm_l6_v2
from sidrec.embed.text import TextTemplate
from sidrec.tagging import pool_from_paths, retrieve_candidates


def true_indices(paths: list[list[str]], pool, levels: int) -> np.ndarray:
    """[N x levels] each item's pool index per level (-1 past its path's end)."""
    lookup = [
        {tuple(pool.path(level, j)): j for j in range(pool.sizes[level])} for level in range(levels)
    ]
    out = np.full((len(paths), levels), -1, dtype=np.int64)
    for i, path in enumerate(paths):
        for level in range(min(levels, len(path or []))):
            out[i, level] = lookup[level].get(tuple(path[: level + 1]), -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--template", default="Title: {title}\nBrand: {brand}")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="tag-retrieval-")
    ensure_ingested("beauty", root, data_dir=args.data_dir, track=False)
    items = pq.read_table(f"{root}/catalog/items.parquet")
    paths = items.column("categories").to_pylist()
    pool = pool_from_paths(paths, args.levels, source="beauty categories")
    truth = true_indices(paths, pool, args.levels)

    encoder = build_encoder(minilm_l6_v2())
    start = time.perf_counter()
    vectors = encoder.encode(TextTemplate.parse(args.template).render(items))
    seconds = time.perf_counter() - start
    tag_vectors = [encoder.encode(pool.texts(level)) for level in range(args.levels)]

    kmax = max(args.ks)
    rows = []
    greedy = np.full(len(paths), -1, dtype=np.int64)
    path_ok = np.ones(len(paths), dtype=bool)
    for level in range(args.levels):
        has = truth[:, level] >= 0
        flat = retrieve_candidates(vectors, tag_vectors[level], pool, level, None, kmax)
        parents = None if level == 0 else np.where(has, truth[:, level - 1], -1)
        under = retrieve_candidates(vectors, tag_vectors[level], pool, level, parents, kmax)
        for name, cands in (("level pool", flat), ("under true parent", under)):
            recalls = [
                np.mean([truth[i, level] in cands[i][:k] for i in np.flatnonzero(has)])
                for k in args.ks
            ]
            rows.append((level, name, recalls))
        top1 = retrieve_candidates(
            vectors, tag_vectors[level], pool, level, None if level == 0 else greedy, 1
        )
        greedy = np.array([c[0] if len(c) else -1 for c in top1])
        path_ok &= greedy == truth[:, level]
        rows.append(
            (level, "greedy top-1 path", [path_ok[has].mean()] + [None] * (len(args.ks) - 1))
        )

    print(
        f"Beauty: {len(paths)} items, pool sizes {pool.sizes}, template {args.template!r}; "
        f"MiniLM embedded the items in {seconds:.1f} s\n"
    )
    print(
        "| level | tags | items with a level-l tag | candidates from | "
        + " | ".join(f"recall@{k}" for k in args.ks)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(args.ks))
    for level, name, recalls in rows:
        cells = " | ".join("" if r is None else f"{r:.3f}" for r in recalls)
        n = int((truth[:, level] >= 0).sum())
        print(f"| {level + 1} | {pool.sizes[level]} | {n} | {name} | {cells} |")


if __name__ == "__main__":
    main()
