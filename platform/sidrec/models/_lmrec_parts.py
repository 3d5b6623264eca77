"""LM-Rec's parts that are not the model: its config, the decoding state, item
text tokenization and the state-dict hooks (`sidrec.models.lmrec` documents
the model and its choices)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LMRecConfig",
    "LMRecState",
    "after_load",
    "drop_frozen",
    "first_id",
    "max_positions",
    "text_sid_embeddings",
    "tokenize_item_texts",
]


@dataclass(frozen=True)
class LMRecConfig:
    num_items: int  # N
    codebook_sizes: tuple[int, ...]  # K_l for each of the L' levels (disambiguation included)
    backbone: str = ""  # hub id or local folder; "" = the packaged all-MiniLM-L6-v2
    tokenizer: str = ""  # "" = the backbone's
    # transformers config kwargs with "model_type": a random LM instead of
    # pretrained weights (tests). Its weights then travel in the state dict.
    random_config: dict[str, Any] | None = None
    prefix_lm: bool | None = None  # None: encoders prefix-LM, decoders causal (docstring)
    lora_rank: int = 16
    lora_alpha: int = 32  # 2 x rank, the usual scaling (LAMIA does not state it)
    lora_dropout: float = 0.05
    lora_targets: str | tuple[str, ...] = "all-linear"
    max_history: int = 20  # LAMIA §5.4 v
    titles: bool = False  # each history item's SID tokens followed by its title's first pieces
    title_tokens: int = 8
    align_tokens: int = 32  # L_align's item text: title + category path, in word pieces
    mlm_probability: float = 0.3  # encoders' SID -> text: share of text pieces masked
    head_dropout: float = 0.1
    trie_softmax: bool = True  # as SID-GPT: each level's softmax over the trie's allowed codes
    # "random": SID embeddings drawn at the word table's scale; "text": each (level,
    # code) starts from the mean word vector of its items' text (`text_sid_embeddings`).
    sid_init: str = "random"

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if not isinstance(self.lora_targets, str):
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.num_items < 1 or self.max_history < 1 or not self.codebook_sizes:
            raise ValueError(f"need num_items, max_history >= 1 and >= 1 level, got {self}")
        if self.sid_init not in ("random", "text"):
            raise ValueError(f"sid_init must be 'random' or 'text', got {self.sid_init!r}")
        if not 0.0 < self.mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1], got {self.mlm_probability}")

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["codebook_sizes"] = list(self.codebook_sizes)
        if not isinstance(self.lora_targets, str):
            out["lora_targets"] = list(self.lora_targets)
        return out


def tokenize_item_texts(
    tokenizer, items, title_tokens: int, align_tokens: int
) -> tuple[Tensor, Tensor]:
    """(titles [N x title_tokens], align texts [N x align_tokens]) word-piece ids,
    right-padded with -1, from the catalog table's `title` and `categories`."""
    titles = [t or "" for t in items.column("title").to_pylist()]
    cats = items.column("categories").to_pylist()
    texts = [f"{t}. {' > '.join(c or [])}" for t, c in zip(titles, cats, strict=True)]
    return _pieces(tokenizer, titles, title_tokens), _pieces(tokenizer, texts, align_tokens)


def _pieces(tokenizer, texts: list[str], width: int) -> Tensor:
    out = torch.full((len(texts), width), -1, dtype=torch.long)
    if width == 0:
        return out
    rows = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=width)
    for i, ids in enumerate(rows["input_ids"]):
        out[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


# The text part's share of a "text"-initialised SID embedding (the rest is the
# random draw, so codes whose items read alike still start apart). Not tuned.
TEXT_INIT_SHARE = 0.8


def text_sid_embeddings(
    words: Tensor, text: Tensor, item_codes: Tensor, codebook_sizes, random: Tensor
) -> Tensor:
    """SID embeddings [sum K x e] seeded from item text, in the word table's space.

    words: [V x e] the backbone's (frozen) word embeddings; text: [N x A] each
    item's word pieces, -1 padded; item_codes: [N x L']; random: [sum K x e] the
    random init. Code c of level l starts at the mean, over the items whose level-l
    code is c, of each item's mean word vector, centred on the level's mean and
    scaled to the word table's spread, mixed TEXT_INIT_SHARE : sqrt(1 - share^2)
    with the random draw's deviation (so the spread stays the word table's); a
    code no item uses keeps its random row. The head is tied to these rows, so a
    tail item's codes start near the text of the items they group instead of at
    noise (LAMIA's L_align learns that link; this starts from it)."""
    words = words.float()
    valid = text >= 0
    if not bool(valid.any()):  # the buffer's -1 fill: nothing to seed from
        raise ValueError("text_sid_embeddings: no item has any text; call set_item_text first")
    bags = text[valid]
    offsets = torch.cat([valid.new_zeros(1, dtype=torch.long), valid.sum(1).cumsum(0)[:-1]])
    item = torch.nn.functional.embedding_bag(bags, words, offsets, mode="mean")  # [N x e]
    centre, spread = words.mean(0), words.std()
    noise = random.float() - random.float().mean(0)
    out, start = [], 0
    for level, k in enumerate(codebook_sizes):
        codes = item_codes[:, level]
        counts = torch.bincount(codes, minlength=k)
        means = torch.zeros(k, words.shape[1], device=words.device).index_add_(0, codes, item)
        means = means / counts.clamp(min=1)[:, None]
        used = counts > 0
        means = means - means[used].mean(0)
        means = means / means[used].std().clamp(min=1e-12) * spread
        mixed = TEXT_INIT_SHARE * means + (1 - TEXT_INIT_SHARE**2) ** 0.5 * noise[start : start + k]
        out.append(torch.where(used[:, None], centre + mixed, random[start : start + k].float()))
        start += k
    return torch.cat(out).to(random.dtype)


class LMRecState(NamedTuple):
    """What the beam search carries between steps (opaque to it).

    hidden: [rows x H] the trunk's output at each beam's newest position (the query
        of its next code).
    kv: per layer (keys, values) [b x heads x (P + S) x dh], per *user*: the prompt's
        P positions, then the S code tokens every beam of the user has fed so far
        (tree attention: each beam sees the prompt and its own ancestors only).
    prompt_valid: [b x P] bool, False on padding; prompt_len: [b] real prompt tokens.
    slots: [rows x t'] the key positions of each beam's fed code tokens.
    nodes: [rows] the trie node each beam's prefix reaches.
    """

    hidden: Tensor
    kv: list[tuple[Tensor, Tensor]]
    prompt_valid: Tensor
    prompt_len: Tensor
    slots: Tensor
    nodes: Tensor


def first_id(*ids: int | None) -> int:
    for i in ids:
        if i is not None:
            return int(i)
    raise ValueError("the tokenizer has no [CLS]/BOS/[SEP]/EOS token to start a sequence with")


def max_positions(config) -> int | None:
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def drop_frozen(module, state_dict: dict, prefix: str, local_metadata) -> None:
    """State-dict post hook: the frozen base weights come from cfg.backbone."""
    for name in module._frozen:
        state_dict.pop(prefix + name, None)


def after_load(module, incompatible) -> None:
    """Load post hook: frozen base weights may be absent; the trie follows item_codes."""
    frozen = module._frozen
    incompatible.missing_keys[:] = [
        k for k in incompatible.missing_keys if k.removeprefix("module.") not in frozen
    ]
    module._trie_cache = None
