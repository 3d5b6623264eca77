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

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if not isinstance(self.lora_targets, str):
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.num_items < 1 or self.max_history < 1 or not self.codebook_sizes:
            raise ValueError(f"need num_items, max_history >= 1 and >= 1 level, got {self}")
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
