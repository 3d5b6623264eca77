"""A seeded synthetic catalog at any size, streamed to the canonical artifacts.

    from sidrec.data.synthetic import SyntheticConfig, generate
    generate(SyntheticConfig(num_items=1_000_000, artifact_root="/tmp/syn1m"))

Writes exactly what `jobs/ingest.py` writes (catalog/{items,interactions}.parquet,
splits/{train,valid,test}.parquet, a manifest.json in each folder, same schemas,
same leave-one-out rules), so every later stage reads it unchanged. Nothing of
size "all interactions" is ever in memory: items are written in blocks of
ITEM_BLOCK rows and users (their interactions and split rows) in blocks of
USER_BLOCK users, each block drawn from its own seeded generator, so the
output depends on the config and the seed only, not on the chunk sizes.
Memory: O(N) small per-item arrays (~24 B/item: topic, popularity sampling
tables) plus one chunk.

The model that draws interactions (a latent-factor model, so there is signal
to learn and recall is above chance):
- items: a power-law popularity w_i = rank_i^-a (Zipf, random ranks) and a
  topic t_i (a leaf of a department > group > leaf tree), ranks dealt
  round-robin over the topics so that each topic holds a Zipf-like spread;
- users: a mixture theta_u over `user_topics` topics drawn in proportion to
  the topics' popularity mass, Dirichlet(1) weights;
- p(i | u) = (1 - noise) * sum_t theta_ut * 1[t_i = t] w_i / W_t + noise * w_i / W:
  a non-negative rank-T factorization (user factors theta_u, item factors the
  topic indicator scaled by popularity), plus sessions: each next interaction
  keeps the previous one's topic with probability `stickiness`, so the last
  item predicts the next one (the signal sequential recommenders use).
Titles, texts and category paths come from word lists per topic
(`_synthetic_text`), so text embeddings, and SIDs learnt from them, see the
topics too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidrec.artifacts import (
    MANIFEST_NAME,
    file_record,
    library_versions,
    publish_dirs,
    sha256_json,
    staging_dir,
    utc_now,
    write_json_atomic,
)
from sidrec.data._synthetic_text import TopicText, item_text
from sidrec.data.ingest import CATALOG_FILES, SPLIT_FILES, existing_outputs
from sidrec.data.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, SPLIT_SCHEMA

__all__ = ["SyntheticConfig", "generate", "split_rows"]

log = logging.getLogger(__name__)

SYNTHETIC_VERSION = 1
ITEM_BLOCK = 65_536  # rows per item block (one seeded generator each)
USER_BLOCK = 4_096  # users per interaction block
_DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    num_items: int
    # Receives catalog/ and splits/, as jobs/ingest.py's --artifact-root.
    artifact_root: str
    seed: int = 0
    # Users per item: 1.0 with mean_length 10 gives ~10 interactions per item
    # (100M at 10M items, the scale issue 18 asks for).
    users_per_item: float = 1.0
    # Mean interactions per user: 3 + a geometric tail (every user has a valid
    # and a test item, as after a 5-core filter most users do).
    mean_length: float = 10.0
    max_length: int = 200
    # Zipf exponent of item popularity. 0.8: the top item takes ~2% of all
    # interactions at 100k items, ~0.8% at 10M (1.0 would give it 8% / 6%).
    popularity_exponent: float = 0.8
    # Topic tree department x group x leaf: 16 x 16 x 8 = 2,048 latent topics.
    branching: tuple[int, int, int] = (16, 16, 8)
    user_topics: int = 3
    noise: float = 0.1  # share of interactions drawn from popularity alone
    stickiness: float = 0.6  # P(next interaction stays in the previous topic)
    max_history: int = 20  # as IngestConfig.max_history
    # Streaming granularity (a multiple of the blocks; output does not depend on it).
    chunk_users: int = 16 * USER_BLOCK
    dataset: str = "synthetic"

    def __post_init__(self) -> None:
        checks = {
            "num_items": self.num_items >= 1,
            "users_per_item": self.users_per_item > 0,
            "mean_length": 3 < self.mean_length <= self.max_length,
            "popularity_exponent": self.popularity_exponent >= 0,
            "branching": len(self.branching) == 3 and min(self.branching) >= 1,
            "user_topics": self.user_topics >= 1,
            "noise": 0 <= self.noise <= 1,
            "stickiness": 0 <= self.stickiness < 1,
            "max_history": self.max_history >= 1,
            "chunk_users": self.chunk_users >= USER_BLOCK and self.chunk_users % USER_BLOCK == 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ValueError(
                f"SyntheticConfig: invalid {values} (mean_length in (3, max_length], "
                f"noise in [0, 1], stickiness in [0, 1), chunk_users a multiple of {USER_BLOCK})"
            )

    @property
    def num_users(self) -> int:
        return max(1, round(self.num_items * self.users_per_item))


def fingerprint(cfg: SyntheticConfig) -> str:
    config = asdict(cfg)
    for key in ("artifact_root", "chunk_users"):  # where and how, not what
        config.pop(key)
    return sha256_json({"version": SYNTHETIC_VERSION, "config": config})


def generate(cfg: SyntheticConfig, force: bool = False) -> dict[str, Any]:
    """Write the catalog and splits of cfg under cfg.artifact_root; return the manifest.

    A no-op when the root already holds an intact run with the same fingerprint.
    """
    root = Path(cfg.artifact_root)
    key = fingerprint(cfg)
    held = existing_outputs(root, key)
    if held is not None and not force:
        log.info("synthetic: %s already holds this catalog; nothing to do", root)
        return held
    model = _ItemModel(cfg)
    with staging_dir(root, "synthetic") as staged:
        (staged / "catalog").mkdir()
        (staged / "splits").mkdir()
        _write_items(cfg, model, staged / "catalog" / "items.parquet")
        counts = _write_users(cfg, model, staged)
        manifest = _manifest(cfg, key, counts)
        outputs = {
            f"{sub}/{f}": file_record(staged / sub / f)
            for sub, files in (("catalog", CATALOG_FILES), ("splits", SPLIT_FILES))
            for f in files
        }
        for record in outputs.values():
            record.pop("path")
        manifest["outputs"] = outputs
        for sub in ("catalog", "splits"):
            write_json_atomic(staged / sub / MANIFEST_NAME, manifest)
        publish_dirs(staged, root, ["catalog", "splits"])
    return manifest


class _ItemModel:
    """The per-item arrays the interaction draws need (O(N), ~24 bytes an item)."""

    def __init__(self, cfg: SyntheticConfig):
        n = cfg.num_items
        self.text = TopicText(cfg.branching, cfg.seed)
        self.num_topics = self.text.num_topics
        rng = np.random.default_rng([cfg.seed, 1])
        rank = rng.permutation(n)  # item -> popularity rank - 1
        weight = (rank + 1.0) ** -cfg.popularity_exponent
        # Ranks are dealt round-robin over the topics (in a random topic order), so
        # that every topic holds a Zipf-like spread of ranks: a topic's j-th most
        # popular item has global rank ~ j * T. Random topics would leave many
        # topics with one item 1000x more popular than the rest, which then
        # fills whole sessions.
        self.topic = rng.permutation(self.num_topics)[rank % self.num_topics].astype(np.int32)
        # Popularity alone: inverse-CDF over all items.
        self.global_cdf = np.cumsum(weight)
        self.global_cdf /= self.global_cdf[-1]
        # Per topic: items sorted by topic, key = topic + within-topic CDF, so one
        # searchsorted(key, t + u) draws an item of topic t in proportion to w_i.
        self.by_topic = np.argsort(self.topic, kind="stable").astype(np.int32)
        w = weight[self.by_topic]
        t = self.topic[self.by_topic]
        mass = np.bincount(t, weights=w, minlength=self.num_topics)
        cum = np.cumsum(w)
        start_cum = np.concatenate([[0.0], np.cumsum(mass)])[t]
        self.topic_key = t + (cum - start_cum) / np.maximum(mass[t], 1e-300)
        # Each topic's last key is exactly t + 1, so rounding never lands in the next topic.
        ends = np.append(np.flatnonzero(np.diff(t)), len(t) - 1)
        self.topic_key[ends] = t[ends] + 1.0
        # Users pick topics in proportion to the topic's mass; empty topics never.
        self.topic_cdf = np.cumsum(mass) / mass.sum()

    def draw_items(self, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.topic_key, topics + rng.random(len(topics)), side="right")
        return self.by_topic[np.minimum(pos, len(self.by_topic) - 1)]

    def draw_popular(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.searchsorted(self.global_cdf, rng.random(count), side="right").clip(
            max=len(self.global_cdf) - 1
        )


def _write_items(cfg: SyntheticConfig, model: _ItemModel, path: Path) -> None:
    with pq.ParquetWriter(path, ITEMS_SCHEMA) as writer:
        for start in range(0, cfg.num_items, ITEM_BLOCK):
            ids = np.arange(start, min(start + ITEM_BLOCK, cfg.num_items))
            rng = np.random.default_rng([cfg.seed, 2, start // ITEM_BLOCK])
            columns = item_text(model.text, model.topic[ids], ids, rng)
            source = pc.binary_join_element_wise("syn-", pc.cast(pa.array(ids), pa.string()), "")
            batch = pa.table(
                {"item_id": pa.array(ids, pa.int32()), "source_id": source, **columns},
                schema=ITEMS_SCHEMA,
            )
            writer.write_table(batch)


def _user_block(cfg: SyntheticConfig, model: _ItemModel, block: int):
    """(lengths [U], items [sum lengths], timestamps) of one block of users."""
    first = block * USER_BLOCK
    users = min(USER_BLOCK, cfg.num_users - first)
    rng = np.random.default_rng([cfg.seed, 3, block])
    lengths = 3 + rng.geometric(1.0 / (cfg.mean_length - 2.0), size=users) - 1
    lengths = np.minimum(lengths, cfg.max_length)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(users), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # User factors: topics in proportion to their mass, Dirichlet(1) weights.
    k = cfg.user_topics
    topics = np.searchsorted(model.topic_cdf, rng.random((users, k)), side="right")
    topics = topics.clip(max=model.num_topics - 1)
    mix = np.cumsum(rng.dirichlet(np.ones(k), size=users), axis=1)
    # Sessions: a new topic is drawn at a user's first interaction and then with
    # probability 1 - stickiness; between draws the topic stays.
    new = rng.random(total) >= cfg.stickiness
    new[starts] = True
    session = np.cumsum(new) - 1
    session_owner = owner[new]
    pick = (rng.random(len(session_owner))[:, None] > mix[session_owner]).sum(1)
    session_topic = topics[session_owner, np.minimum(pick, k - 1)]
    items = model.draw_items(session_topic[session], rng)
    noisy = rng.random(total) < cfg.noise
    items[noisy] = model.draw_popular(int(noisy.sum()), rng)
    # Nobody buys the same thing twice in a row: a topic's most popular item
    # would otherwise repeat through a session. Redraw (in the topic) a few times.
    for _ in range(3):
        again = np.zeros(total, dtype=bool)
        again[1:] = items[1:] == items[:-1]
        again[starts] = False
        if not again.any():
            break
        items[again] = model.draw_items(session_topic[session[again]], rng)
    items[again] = model.draw_popular(int(again.sum()), rng)  # a topic of one item
    # Timestamps: a start in 2020-2024, then exponential gaps of about a day.
    gaps = rng.exponential(_DAY, size=total).astype(np.int64) + 1
    base = 1_577_836_800 + rng.integers(0, 4 * 365 * _DAY, size=users)
    stamps = np.cumsum(gaps)
    stamps = stamps - (stamps[starts] - gaps[starts])[owner] + base[owner]
    return lengths, items.astype(np.int32), stamps


def _write_users(cfg: SyntheticConfig, model: _ItemModel, staged: Path) -> dict[str, int]:
    counts = {"interactions": 0, "train": 0, "valid": 0, "test": 0}
    seen = np.zeros(cfg.num_items, dtype=bool)
    paths = {s: staged / "splits" / f"{s}.parquet" for s in ("train", "valid", "test")}
    writers = {s: pq.ParquetWriter(p, SPLIT_SCHEMA) for s, p in paths.items()}
    inter = pq.ParquetWriter(staged / "catalog" / "interactions.parquet", INTERACTIONS_SCHEMA)
    blocks = -(-cfg.num_users // USER_BLOCK)
    per_chunk = cfg.chunk_users // USER_BLOCK
    try:
        for first_block in range(0, blocks, per_chunk):
            parts = [
                _user_block(cfg, model, b)
                for b in range(first_block, min(first_block + per_chunk, blocks))
            ]
            lengths = np.concatenate([p[0] for p in parts])
            items = np.concatenate([p[1] for p in parts])
            stamps = np.concatenate([p[2] for p in parts])
            user0 = first_block * USER_BLOCK
            users = np.repeat(np.arange(user0, user0 + len(lengths), dtype=np.int32), lengths)
            inter.write_table(
                pa.table(
                    {"user_id": users, "item_id": items, "timestamp": stamps},
                    schema=INTERACTIONS_SCHEMA,
                )
            )
            seen[items] = True
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            for split, table in split_rows(items, offsets, cfg.max_history, user0).items():
                writers[split].write_table(table)
                counts[split] += table.num_rows
            counts["interactions"] += len(items)
    finally:
        inter.close()
        for writer in writers.values():
            writer.close()
    counts["items_without_interactions"] = int((~seen).sum())
    return counts


def split_rows(
    items: np.ndarray, offsets: np.ndarray, max_history: int, first_user: int = 0
) -> dict[str, pa.Table]:
    """Leave-one-out split tables of users whose sequences are items[offsets[u]:offsets[u+1]].

    Vectorized (no loop over users or rows); the same rows, in the same order,
    as `sidrec.data.ingest.build_splits` (its docstring has the rules).
    User u gets id first_user + u.
    """
    n = np.diff(offsets).astype(np.int64)
    full = n >= 3
    last_train = np.where(full, n - 3, n - 1)  # train targets t = 1..last_train
    spans = {
        "train": (np.ones_like(n), np.maximum(last_train, 0) + 1),
        "valid": (n - 2, np.where(full, n - 1, n - 2)),
        "test": (n - 1, np.where(full, n, n - 1)),
    }
    return {
        split: _rows(items, offsets, lo, np.maximum(hi, lo), max_history, first_user)
        for split, (lo, hi) in spans.items()
    }


def _rows(items, offsets, lo, hi, max_history, first_user) -> pa.Table:
    """One row per (user u, target position t), lo[u] <= t < hi[u], user-major."""
    counts = hi - lo
    user = np.repeat(np.arange(len(counts)), counts)
    row_start = np.cumsum(counts) - counts
    t = lo[user] + np.arange(len(user)) - row_start[user]
    target_pos = offsets[:-1][user] + t
    hist_len = np.minimum(t, max_history)
    hist_off = np.concatenate([[0], np.cumsum(hist_len)])
    first = np.repeat(target_pos - hist_len, hist_len)
    flat = first + np.arange(int(hist_off[-1])) - np.repeat(hist_off[:-1], hist_len)
    return pa.table(
        {
            "user_id": pa.array((user + first_user).astype(np.int32)),
            "history": pa.ListArray.from_arrays(
                pa.array(hist_off.astype(np.int32)), pa.array(items[flat].astype(np.int32))
            ),
            "target": pa.array(items[target_pos].astype(np.int32)),
        },
        schema=SPLIT_SCHEMA,
    )


def _manifest(cfg: SyntheticConfig, key: str, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "stage": "ingest",
        "producer": "sidrec.data.synthetic",
        "dataset": cfg.dataset,
        "created_at": utc_now(),
        "fingerprint": key,
        "config": asdict(cfg),
        "inputs": [],
        "order": "chronological by timestamp (drawn in order per user)",
        "has_timestamps": True,
        "counts": {
            "users": cfg.num_users,
            "items": cfg.num_items,
            "interactions": counts["interactions"],
            "items_without_interactions": counts["items_without_interactions"],
            "splits": {s: counts[s] for s in ("train", "valid", "test")},
            "users_train_only": cfg.num_users - counts["test"],
        },
        "notes": ["synthetic: latent-factor interactions, power-law popularity (issue 18)"],
        "mlflow_run_id": None,
        "versions": library_versions(),
        "outputs": {},
    }
