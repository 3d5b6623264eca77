"""Word lists and vectorized text for the synthetic catalog (sidrec.data.synthetic).

Every string column is built by Arrow kernels (`take` + `binary_join_element_wise`)
from small per-topic tables, never by a Python loop over items, so 10M titles
cost seconds. A topic's items share its category path and its topic words, so a
text encoder (even a hashed bag of words) places them near each other, and the
SIDs learnt from those embeddings carry the latent structure the interactions
were drawn from.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TopicText", "item_text"]

DEPARTMENTS = (
    "Beauty", "Books", "Garden", "Grocery", "Health", "Home", "Kitchen", "Music",
    "Office", "Outdoors", "Pets", "Sports", "Tools", "Toys", "Travel", "Video",
)  # fmt: skip
ADJECTIVES = (
    "classic", "compact", "deluxe", "durable", "eco", "essential", "fresh", "gentle",
    "handmade", "heavy", "light", "mini", "modern", "natural", "organic", "portable",
    "premium", "pro", "quick", "rapid", "rugged", "silent", "simple", "smart",
    "soft", "sturdy", "travel", "ultra", "vintage", "warm", "wireless", "zesty",
)  # fmt: skip
COLORS = (
    "amber", "black", "blue", "bronze", "coral", "cream", "gold", "green",
    "grey", "ivory", "navy", "olive", "pink", "red", "silver", "white",
)  # fmt: skip
_ONSETS = ("b", "br", "c", "ch", "d", "f", "g", "gr", "k", "l", "m", "n", "p", "r", "s", "st", "t", "v", "z")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "oo")
_CODAS = ("", "n", "r", "s", "x", "l", "m", "t")


def pseudo_words(count: int, rng: np.random.Generator) -> list[str]:
    """count distinct pronounceable two-syllable words (topic nouns, brand names)."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < count:
        parts = [
            _ONSETS[rng.integers(len(_ONSETS))]
            + _VOWELS[rng.integers(len(_VOWELS))]
            + _CODAS[rng.integers(len(_CODAS))]
            for _ in range(2)
        ]
        word = "".join(parts)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class TopicText:
    """Per-topic strings: category path, a noun and `words_per_topic` topic words.

    Topics are the leaves of a department > group > leaf tree (branching
    b0 x b1 x b2); topic t is leaf t in row-major order.
    """

    def __init__(self, branching: tuple[int, int, int], seed: int, words_per_topic: int = 6):
        rng = np.random.default_rng([seed, 7])
        b0, b1, b2 = branching
        depts = [
            DEPARTMENTS[i % len(DEPARTMENTS)] + ("" if i < len(DEPARTMENTS) else f" {i}")
            for i in range(b0)
        ]
        groups = pseudo_words(b0 * b1, rng)
        leaves = pseudo_words(b0 * b1 * b2 + 4096, rng)
        self.num_topics = b0 * b1 * b2
        nouns, vocab = leaves[: self.num_topics], leaves[self.num_topics :]
        paths, words = [], []
        for t in range(self.num_topics):
            d, g = t // (b1 * b2), t // b2
            paths.append([depts[d], f"{depts[d]} {groups[g].title()}", nouns[t].title()])
            # Topic words: half shared with the group (siblings look alike), half own.
            own = rng.choice(len(vocab), words_per_topic // 2, replace=False)
            shared = np.random.default_rng([seed, 8, g]).choice(
                len(vocab), words_per_topic - words_per_topic // 2, replace=False
            )
            words.append(" ".join(vocab[i] for i in (*shared, *own)))
        self.paths = pa.array(paths, pa.list_(pa.string()))
        self.path_text = pa.array([" > ".join(p) for p in paths])
        self.nouns = pa.array(nouns)
        self.words = pa.array(words)
        self.brands = pa.array(pseudo_words(512, np.random.default_rng([seed, 9])))


def item_text(
    text: TopicText, topics: np.ndarray, item_ids: np.ndarray, rng: np.random.Generator
) -> dict[str, pa.Array]:
    """title, text and categories columns for items of the given topics ([n] each)."""
    n = len(topics)
    t = pa.array(topics)
    brand = text.brands.take(pa.array(rng.integers(len(text.brands), size=n)))
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(len(ADJECTIVES), size=n)))
    color = pa.array(COLORS).take(pa.array(rng.integers(len(COLORS), size=n)))
    model = pc.cast(pa.array(item_ids % 10_000), pa.string())
    title = pc.binary_join_element_wise(brand, adjective, color, text.nouns.take(t), model, " ")
    body = pc.binary_join_element_wise(
        "Title: ", title, ". Category: ", text.path_text.take(t), ". ", text.words.take(t), ""
    )
    return {"title": title, "text": body, "categories": text.paths.take(t)}
