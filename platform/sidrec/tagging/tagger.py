"""Hierarchical tag generation for a batch of items, in one process (HiD-VAE §3.2).

    tagger = Tagger(TagConfig(lm=hf_lm("/models/qwen2.5-1.5b")), pool)
    paths, logps = tagger.tag(["Title: OPI Nail Lacquer ...", ...])
    # paths[i] = ["Makeup", "Nails", "Nail Polish"]; logps[i] = the chosen candidates' scores

Per level l, top-down: retrieve C_l by cosine similarity (Eq. 3, restricted to
the chosen parent's children in a tree), then let the LM choose in C_l given
the item text and the tags chosen at levels < l (Eq. 4). A candidate set of
one needs no LM call. An item stops early where its parent has no children.
The Ray actor pool (sidrec.tagging.ray_tags) holds one Tagger per actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sidrec.embed import EncoderConfig, build_encoder, minilm_l6_v2
from sidrec.tagging.pool import TagPool
from sidrec.tagging.retrieve import retrieve_candidates
from sidrec.tagging.scorer import LMConfig, Scorer, build_scorer, render_prompt

__all__ = ["TagConfig", "Tagger"]


@dataclass(frozen=True)
class TagConfig:
    # The chooser (Eq. 4): a causal LM and how it scores candidates.
    lm: LMConfig
    # The retrieval encoder (Eq. 3) for item texts and tag paths; MiniLM is offline
    # and CPU-cheap, and the same model stage 2 embeds the catalog with by default.
    encoder: EncoderConfig = field(default_factory=minilm_l6_v2)
    # Tag levels to generate, coarse -> fine (Beauty's paths: 3 cover 90% of items).
    levels: int = 3
    # Candidates per level (k of Eq. 3): recall grows with k, and so does LM cost
    # (one scored pair per candidate); 5 keeps the true tag in the set for most
    # Beauty items (docs/RESULTS_tags.md) at 5 LM pairs per item and level.
    top_k: int = 5
    # Item text shown to the encoder and the LM (sidrec.embed.TextTemplate). Never
    # the category path itself when the paths are the ground truth being measured.
    template: str = "{title}"
    # Rows per actor call (map_batches batch_size): more rows, larger LM batches.
    rows_per_call: int = 64
    # Actors, each with its own LM copy; 0 = one per GPU, else one per spare CPU.
    num_actors: int = 0
    # CPUs Ray reserves per actor; 0 = the CPUs left after Ray Data's read task, shared.
    cpus_per_actor: float = 0.0
    # GPUs per actor; > 0 fails fast on a cluster without GPUs (Ray would wait forever).
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        from sidrec.embed.text import TextTemplate

        TextTemplate.parse(self.template)
        if self.levels < 1 or self.top_k < 1 or self.rows_per_call < 1:
            raise ValueError("levels, top_k and rows_per_call must be >= 1")
        if min(self.num_actors, self.cpus_per_actor, self.num_gpus) < 0:
            raise ValueError("num_actors, cpus_per_actor and num_gpus must be >= 0 (0 = auto)")

    def for_workers(self) -> TagConfig:
        """The config an actor builds: its models on the GPU when it was given one."""
        if self.num_gpus <= 0:
            return self
        return replace(
            self,
            lm=replace(self.lm, device="cuda"),
            encoder=replace(self.encoder, device="cuda"),
        )


class Tagger:
    """An encoder, the pool's tag vectors and a scorer; `tag` runs Eq. 3 + Eq. 4 per level."""

    def __init__(self, cfg: TagConfig, pool: TagPool, scorer: Scorer | None = None):
        if pool.levels < cfg.levels:
            raise ValueError(f"the tag pool has {pool.levels} levels, {cfg.levels} asked")
        self.cfg = cfg
        self.pool = pool
        self.encoder = build_encoder(cfg.encoder)
        self.tag_vectors = [self.encoder.encode(pool.texts(level)) for level in range(cfg.levels)]
        self.scorer = scorer or build_scorer(cfg.lm)

    def tag(self, texts: Sequence[str]) -> tuple[list[list[str]], list[list[float]]]:
        """texts: n item texts -> (n paths of <= levels tag names, n lists of their log-likelihoods)."""
        n = len(texts)
        texts = [t[: self.cfg.lm.max_text_chars] for t in texts]
        item_vectors = self.encoder.encode(texts)  # [n x d]
        chosen = np.full((n, self.cfg.levels), -1, dtype=np.int64)
        scores: list[list[float]] = [[] for _ in range(n)]
        for level in range(self.cfg.levels):
            parents = None if level == 0 else chosen[:, level - 1]
            cands = retrieve_candidates(
                item_vectors, self.tag_vectors[level], self.pool, level, parents, self.cfg.top_k
            )
            self._choose(texts, chosen, scores, level, cands)
        paths = [
            [self.pool.names[level][j] for level, j in enumerate(row) if j >= 0]
            for row in chosen.tolist()
        ]
        return paths, scores

    def _choose(self, texts, chosen, scores, level: int, cands: list[np.ndarray]) -> None:
        names = self.pool.names[level]
        ask = [i for i, c in enumerate(cands) if len(c) > 1]
        prompts = [
            render_prompt(
                texts[i],
                [self.pool.names[lv][chosen[i, lv]] for lv in range(level)],
                level,
                [names[j] for j in cands[i]],
            )
            for i in ask
        ]
        logps = self.scorer.score(prompts, [[names[j] for j in cands[i]] for i in ask])
        for i, lp in zip(ask, logps, strict=True):
            best = int(np.argmax(lp))  # ties: the better-retrieved candidate (listed first)
            chosen[i, level] = cands[i][best]
            scores[i].append(float(lp[best]))
        for i, c in enumerate(cands):
            if len(c) == 1:  # nothing to choose: no LM call, log-likelihood 0 (certain)
                chosen[i, level] = c[0]
                scores[i].append(0.0)
