"""LM-Rec: a pretrained language model as the backbone of a generative SID recommender.

LAMIA (§4.3 and §5.4 v) feeds its semantic IDs to an LLM recommender: OPT-350M
with LoRA r 128, lr 5e-4, batch 64, a history of 20 items, trained on next-item
SID generation (L_rip, Eq. 10) jointly with a text-token alignment task
(L_align, Eq. 11; after LC-Rec), then on L_rip alone; early stopping, patience
5. Its Table 3 shows TIGER's SIDs read by a pretrained BERT-base far above the
same SIDs read by 3-12-layer transformers trained from scratch. This module is
that recommender over any Hugging Face backbone.

    tokens   every (level, code) of the SID table is a new token with a fresh,
             trainable embedding (the disambiguation level too; `sid_init`); text tokens keep
             the backbone's frozen word embeddings. An item is written as its L'
             SID tokens, optionally followed by its first `title_tokens` title
             word pieces (`titles`); a history is its last `max_history` items.
    backbone the LM's trunk, frozen, with LoRA (PEFT) of rank `lora_rank` on
             `lora_targets` ("all-linear" by default). The base weights are not in
             the state dict: a bundle holds the backbone's name or path, the
             adapter, the SID embeddings and the heads.
    head     the next code, level by level, over SID tokens only:
             logits_l = LN(GELU(W h)) . E_sid[level l]^T + b_l (tied to the SID
             input embeddings), and, as SID-GPT's `trie_softmax`, each level's
             softmax runs over the codes the SID trie allows after the prefix.

Attention, and why (the issue asks to choose for BERT-family encoders):

- A decoder-only causal LM (OPT, GPT-2) reads the flattened sequence
  [BOS] item_1 ... item_n causally, and L_rip is Eq. 10 verbatim: every SID
  token of items 2..n is predicted from everything before it, so one forward
  pass trains all n - 1 next items and all L' levels of each (the
  whole-sequence training of SID-GPT, here at the token level).
- A BERT-family encoder uses a *prefix-LM* mask: [CLS] history [SEP] reads
  bidirectionally, as BERT was pretrained to, and the target's SID tokens
  attend to the whole prefix and causally to each other; [SEP] predicts level
  0 and target token l predicts level l + 1, so one pass trains all L' levels
  (a training row is one user at a random cut point, redrawn each epoch, so
  every prefix of the sequence is seen over epochs at one pass per user per
  epoch). Chosen over an encoder-decoder with the pretrained encoder because
  the pretrained weights then serve the target tokens too (an encoder-decoder
  needs a decoder trained from scratch, which is the from-scratch model
  Table 3 beats), nothing but the mask changes, and the encoder's bidirectional
  reading of the history is kept where a causal mask would discard it.
  `prefix_lm=False` runs an encoder causally (whole-sequence training at the
  cost of that mismatch); `prefix_lm=True` puts a decoder in prefix mode.
- Measured (Beauty, MiniLM; docs/RESULTS_lmrec.md): causal wins at equal epochs
  (valid R@10 .0525 against .0439 at 4), as it trains every next item of a row, so
  the encoder presets set `prefix_lm=False`; `None` (other backbones) keeps the rule.

L_align (Eq. 11; the paper's Fig. 5 gives the text -> SID template; where it is
silent, the choices are ours): per item, the text is its title and category path
("title. a > b > c", `align_tokens` word pieces), and
- text -> SID: [BOS] text [SEP] codes, the item's L' SID tokens generated through
  the same head and trie softmax as L_rip (prefix-LM for encoders: the text reads
  bidirectionally; causal for decoders);
- SID -> text: for a decoder LM-style, [BOS] codes text with next-token
  cross-entropy on the text through the LM's own (frozen) output layer; for an
  encoder MLM-style, [CLS] codes [SEP] text with `mlm_probability` of the text's
  word pieces replaced by [MASK] (at least one), predicted through a fresh MLM
  head tied to the frozen word embeddings (MiniLM ships no MLM head).
L_align = the mean of the two; `sidrec.models.train.lmrec_loop` mixes
L_rip + lambda * L_align in phase 1 and runs L_rip alone in phase 2.

Decoding: `encode` runs the prompt once per user and keeps its per-layer keys
and values at [b x ...]; each `step` feeds the w beams' newest SID tokens as w
more positions of their user's sequence (tree attention: a 4-D mask lets each
beam see the prompt, its own ancestors and itself), so the cache is per user,
never copied per beam, and the head gives the next level's logits;
`sidrec.decoding.constrained_beam_search` drives it like TIGER and SID-GPT.

    model = lmrec_minilm(item_codes, codebook_sizes)          # item_codes: [N x L']
    model.set_item_text(*tokenize_item_texts(model.tokenizer, items, 8, 32))
    loss = model(rows)                                         # rows: [b x (s+1)] item ids
    state = model.encode(history)
    constrained_beam_search(model, b, trie, beam_width=20, topk=20, state=state)
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidrec.decoding.trie import SidTrie, trie_with_item_nodes
from sidrec.models._hf_backbone import attention_bias, cache_from, kv_of, load_backbone
from sidrec.models._lmrec_parts import (
    LMRecConfig,
    LMRecState,
    after_load,
    drop_frozen,
    first_id,
    max_positions,
    text_sid_embeddings,
    tokenize_item_texts,
)

__all__ = [
    "LMREC_BERT_BASE",
    "LMREC_MINILM",
    "LMREC_OPT350M",
    "LMRec",
    "LMRecConfig",
    "LMRecState",
    "lmrec",
    "lmrec_bert_base",
    "lmrec_minilm",
    "lmrec_opt350m",
    "tokenize_item_texts",
]


def lmrec(item_codes: Tensor, codebook_sizes: Sequence[int], **fields: Any) -> LMRec:
    """item_codes: [N x L'] each item's full SID; fields: any `LMRecConfig` field."""
    item_codes = torch.as_tensor(item_codes, dtype=torch.long)
    cfg = LMRecConfig(num_items=item_codes.shape[0], codebook_sizes=tuple(codebook_sizes), **fields)
    model = LMRec(cfg)
    model.set_item_codes(item_codes)
    return model


# Each preset's architecture (the fields it sets over LMRecConfig's defaults).
# Causal (not prefix-LM) and text-seeded SID rows: each measured better on Beauty.
LMREC_MINILM = MappingProxyType(
    {"backbone": "", "prefix_lm": False, "lora_rank": 16, "lora_alpha": 32, "sid_init": "text"}
)
LMREC_OPT350M = MappingProxyType(
    {"backbone": "facebook/opt-350m", "lora_rank": 128, "lora_alpha": 256}
)
LMREC_BERT_BASE = MappingProxyType(
    {"backbone": "bert-base-uncased", "prefix_lm": False, "lora_rank": 128, "lora_alpha": 256}
)


def lmrec_minilm(item_codes: Tensor, codebook_sizes: Sequence[int], **over: Any) -> LMRec:
    """The CPU default: the packaged all-MiniLM-L6-v2 (6-layer BERT, 384 wide, 22M
    parameters) read causally (`prefix_lm=False`), SID rows seeded from item text
    (`sid_init="text"`), both measured, and LoRA r 16 on every linear layer (the
    paper's r 128 measured +10% R@10 at ~10% more time an epoch). Recipe: LMREC_RECIPE."""
    return lmrec(item_codes, codebook_sizes, **{**LMREC_MINILM, **over})


def lmrec_opt350m(item_codes: Tensor, codebook_sizes: Sequence[int], **over: Any) -> LMRec:
    """LAMIA §5.4 v on a cluster: facebook/opt-350m (hub id or a local copy, via
    `backbone`), causal, LoRA r 128."""
    return lmrec(item_codes, codebook_sizes, **{**LMREC_OPT350M, **over})


def lmrec_bert_base(item_codes: Tensor, codebook_sizes: Sequence[int], **over: Any) -> LMRec:
    """LAMIA Table 3's recommender: bert-base-uncased, LoRA r 128, causal as the
    MiniLM preset (measured on MiniLM only; the reason, targets per epoch, is the
    same for any encoder)."""
    return lmrec(item_codes, codebook_sizes, **{**LMREC_BERT_BASE, **over})


class LMRec(nn.Module):
    def __init__(self, cfg: LMRecConfig):
        super().__init__()
        self.cfg = cfg
        bb = load_backbone(
            cfg.backbone, cfg.tokenizer, cfg.random_config, cfg.lora_rank,
            cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
        )  # fmt: skip
        self.lm = bb.peft  # registers the trunk (and a decoder's LM head) as submodules
        self._bb = bb
        self.tokenizer = bb.tokenizer
        self.is_encoder = bb.is_encoder
        self.prefix_lm = bb.is_encoder if cfg.prefix_lm is None else cfg.prefix_lm
        words = bb.word_embeddings.weight.detach()
        self.text_vocab, width, sizes = words.shape[0], words.shape[1], cfg.codebook_sizes
        tok = bb.tokenizer
        self.bos = first_id(tok.cls_token_id, tok.bos_token_id, tok.eos_token_id)
        self.sep = first_id(tok.sep_token_id, tok.eos_token_id, self.bos)
        self.mask_id = tok.mask_token_id
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)  # SID token = V + offset + code
        # Fresh SID embeddings at the word table's scale (mean and spread), so the
        # backbone's input LayerNorms see familiar magnitudes.
        self.sid_embedding = nn.Embedding(sum(sizes), width)
        with torch.no_grad():
            self.sid_embedding.weight.normal_(0.0, float(words.float().std()))
            self.sid_embedding.weight.add_(words.float().mean(0))
        hidden = bb.hidden_size
        self.head = nn.Sequential(
            nn.Linear(hidden, width), nn.GELU(), nn.LayerNorm(width), nn.Dropout(cfg.head_dropout)
        )
        self.head_bias = nn.Parameter(torch.zeros(sum(sizes)))
        if self.is_encoder:  # BERT's MLM head shape, fresh, tied to the frozen word table
            self.text_head = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.LayerNorm(width))
            self.text_bias = nn.Parameter(torch.zeros(self.text_vocab))
        n, levels = cfg.num_items, cfg.num_levels
        self.register_buffer("item_codes", torch.zeros(n, levels, dtype=torch.long))
        title_width = cfg.title_tokens if cfg.titles else 0
        self.register_buffer("item_title", torch.full((n, title_width), -1, dtype=torch.long))
        self.register_buffer(
            "item_text", torch.full((n, cfg.align_tokens), -1, dtype=torch.long), persistent=False
        )
        self._trie_cache: tuple[SidTrie, Tensor] | None = None
        self.register_load_state_dict_post_hook(after_load)
        # Pretrained base weights come from `backbone`, not the state dict; a random
        # backbone has nothing to load them from, so its weights stay in it.
        self._frozen: frozenset[str] = frozenset()
        if cfg.random_config is None:
            self._frozen = frozenset(n for n, p in self.named_parameters() if not p.requires_grad)
            self.register_state_dict_post_hook(drop_frozen)

    # ---- tables ------------------------------------------------------------------
    @property
    def trunk(self) -> nn.Module:
        return self._bb.trunk

    def set_item_codes(self, item_codes: Tensor) -> None:
        """item_codes: [N x L'], row i = item i's full SID."""
        codes = torch.as_tensor(item_codes, dtype=torch.long)
        if codes.shape != self.item_codes.shape:
            raise ValueError(
                f"item_codes: expected {tuple(self.item_codes.shape)}, got {tuple(codes.shape)}"
            )
        if bool(((codes < 0) | (codes >= torch.tensor(self.cfg.codebook_sizes))).any()):
            raise ValueError(f"item_codes: codes outside codebook_sizes {self.cfg.codebook_sizes}")
        with torch.no_grad():
            self.item_codes.copy_(codes)
        self._trie_cache = None

    def set_item_text(self, titles: Tensor, texts: Tensor) -> None:
        """titles: [N x *], texts: [N x *] word-piece ids, -1 padded
        (`tokenize_item_texts`), cut or padded to title_tokens / align_tokens.
        Titles are kept only when cfg.titles."""
        for name, ids in (("item_title", titles), ("item_text", texts)):
            buf = getattr(self, name)
            ids = torch.as_tensor(ids, dtype=torch.long)
            if ids.shape[0] != buf.shape[0]:
                raise ValueError(f"{name}: {ids.shape[0]} rows for {buf.shape[0]} items")
            width = min(ids.shape[1], buf.shape[1])
            with torch.no_grad():
                buf.fill_(-1)
                buf[:, :width] = ids[:, :width].to(buf.device)

    @torch.no_grad()
    def seed_sids_from_text(self) -> None:
        """sid_init "text": the SID rows from item_text (`text_sid_embeddings`); the
        train loop calls it after set_item_text, before the first step."""
        w, cfg = self.sid_embedding.weight, self.cfg
        words = self._bb.word_embeddings.weight
        w.copy_(text_sid_embeddings(words, self.item_text, self.item_codes, cfg.codebook_sizes, w))

    def trie(self) -> tuple[SidTrie, Tensor]:
        """The SID trie on this model's device and [N x L'] the node each item's SID
        prefix reaches before each level (as `SidGPT.trie`)."""
        device = self.item_codes.device
        if self._trie_cache is None or self._trie_cache[1].device != device:
            trie, nodes = trie_with_item_nodes(self.item_codes, self.cfg.codebook_sizes)
            self._trie_cache = (trie.to(device), nodes.to(device))
        return self._trie_cache

    # ---- sequences -----------------------------------------------------------------
    def _sid_ids(self, items: Tensor) -> Tensor:
        """[...] item ids -> [... x L'] their SID token ids."""
        return self.item_codes[items] + self.offsets + self.text_vocab

    def _embed(self, ids: Tensor) -> Tensor:
        """ids [...] (-1 padding, < V text, >= V SID tokens) -> [... x e]."""
        v = self.text_vocab
        words = self._bb.word_embeddings(ids.clamp(0, v - 1))
        sids = self.sid_embedding((ids - v).clamp(0, self.sid_embedding.num_embeddings - 1))
        return torch.where((ids >= v)[..., None], sids, words)

    def _prompt(self, history: Tensor) -> tuple[Tensor, Tensor]:
        """history [b x s] (left-padded -1) -> ids [b x S] = [BOS] items ([SEP] when
        prefix-LM), and ends [b x s]: the index of each item's last real token."""
        b, s = history.shape
        items = history.clamp(min=0)
        seg = torch.cat([self._sid_ids(items), self.item_title[items]], -1)  # [b x s x w]
        seg = seg.masked_fill((history < 0)[..., None], -1)
        width = seg.shape[-1]
        last = self.cfg.num_levels - 1 + (seg[..., self.cfg.num_levels :] >= 0).sum(-1)
        parts = [history.new_full((b, 1), self.bos), seg.flatten(1)]
        if self.prefix_lm:
            parts.append(history.new_full((b, 1), self.sep))
        ends = 1 + torch.arange(s, device=history.device) * width + last
        return torch.cat(parts, 1), ends

    def _run(self, ids: Tensor, prefix: int, cache=None) -> Tensor:
        """ids [b x S] (-1 = padding) -> the trunk's last hidden state [b x S x H]."""
        limit = max_positions(self.trunk.config)
        if limit is not None and ids.shape[1] > limit:
            raise ValueError(
                f"{ids.shape[1]} tokens > the backbone's {limit} positions: "
                "lower max_history or title_tokens"
            )
        valid = ids >= 0
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)  # left padding moves nothing
        kwargs = {} if cache is None else {self._bb.cache_arg: cache, "use_cache": True}
        out = self.trunk(
            inputs_embeds=self._embed(ids),
            attention_mask=attention_bias(valid, prefix),
            position_ids=pos,
            **kwargs,
        )
        return out.last_hidden_state

    # ---- head ----------------------------------------------------------------------
    def _level_logits(self, level: int, z: Tensor, nodes: Tensor | None) -> Tensor:
        """z: [... x e] head outputs -> [... x K_level], -inf where the trie disallows."""
        lo, k = int(self.offsets[level]), self.cfg.codebook_sizes[level]
        logits = z @ self.sid_embedding.weight[lo : lo + k].T + self.head_bias[lo : lo + k]
        if not self.cfg.trie_softmax or nodes is None:
            return logits
        allowed = self.trie()[0].allowed_mask(level, nodes.reshape(-1)).reshape(logits.shape)
        return logits.masked_fill(~allowed, float("-inf"))

    def _code_logits(self, h: Tensor, items: Tensor) -> list[Tensor]:
        """Teacher-forced logits, one [... x K_l] per level. h: [... x L' x H] the trunk's
        output at the position predicting each level of items [...]."""
        z = self.head(h)
        nodes = self.trie()[1][items]  # [... x L']
        return [
            self._level_logits(t, z[..., t, :], nodes[..., t]) for t in range(self.cfg.num_levels)
        ]

    def _code_loss(self, h: Tensor, items: Tensor, keep: Tensor) -> Tensor:
        """Mean over levels of the code cross-entropy at kept targets."""
        codes = self.item_codes[items.clamp(min=0)]
        logits = self._code_logits(h, items.clamp(min=0))
        return torch.stack(
            [
                F.cross_entropy(
                    lg[keep].float(), codes[..., t][keep], reduction="sum"
                ) / keep.sum().clamp(min=1)
                for t, lg in enumerate(logits)
            ]
        ).mean()  # fmt: skip

    def _target_hidden(self, history: Tensor, target: Tensor) -> Tensor:
        """[b x L' x H]: the trunk's output at the positions predicting each level of
        target [b] after history [b x s], teacher-forced (one pass)."""
        ids, ends = self._prompt(history)
        p, levels = ids.shape[1], self.cfg.num_levels
        seq = torch.cat([ids, self._sid_ids(target.clamp(min=0))[:, :-1]], 1)
        hidden = self._run(seq, p if self.prefix_lm else 0)
        first = self._query_index(ends, p)  # [b]: where level 0 is predicted
        pos = torch.cat([first[:, None], p + torch.arange(levels - 1, device=seq.device)[None]
                         .expand(len(seq), -1)], 1)  # fmt: skip
        return hidden.gather(1, pos[..., None].expand(-1, -1, hidden.shape[-1]))

    def _query_index(self, ends: Tensor, prompt_len: int) -> Tensor:
        """[b] the prompt position that predicts the next item's level 0: [SEP] in a
        prefix-LM, else the last history item's last token ([BOS] with no history)."""
        b = ends.shape[0]
        if self.prefix_lm:
            return torch.full((b,), prompt_len - 1, dtype=torch.long, device=ends.device)
        if ends.shape[1] == 0:
            return torch.zeros(b, dtype=torch.long, device=ends.device)
        return ends[:, -1]

    # ---- training --------------------------------------------------------------------
    def forward(
        self,
        rows: Tensor,
        align_items: Tensor | None = None,
        align_weight: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """L_rip (+ align_weight * L_align on align_items [m], phase 1).
        rows: [b x (s+1)] item ids, oldest first, left-padded with -1."""
        loss = self.rip_loss(rows)
        if align_items is not None and align_weight > 0:
            to_sid, to_text = self.align_losses(align_items, generator)
            return loss + align_weight * 0.5 * (to_sid + to_text)
        if self.is_encoder:  # phase 2: keep the MLM head in the graph, as DDP requires
            loss = loss + 0.0 * sum(p.sum() for p in (*self.text_head.parameters(), self.text_bias))
        return loss

    def rip_loss(self, rows: Tensor) -> Tensor:
        """LAMIA Eq. 10 on SID tokens only. Causal: every next item of the row in one
        pass; prefix-LM: the row's last item after the rest (one pass, all levels)."""
        if self.prefix_lm:
            target = rows[:, -1]
            return self._code_loss(self._target_hidden(rows[:, :-1], target), target, target >= 0)
        ids, ends = self._prompt(rows)  # [BOS] item_0 ... item_s
        hidden = self._run(ids, 0)
        b, s1 = rows.shape
        levels, width = self.cfg.num_levels, self.cfg.num_levels + self.item_title.shape[1]
        starts = 1 + torch.arange(1, s1, device=rows.device) * width  # item k's first token
        later = starts[:, None] + torch.arange(levels - 1, device=rows.device)[None]  # [s x L'-1]
        pos = torch.cat([ends[:, :-1, None], later[None].expand(b, -1, -1)], 2)  # [b x s x L']
        h = hidden.gather(1, pos.flatten(1)[..., None].expand(-1, -1, hidden.shape[-1]))
        keep = (rows[:, 1:] >= 0) & (rows[:, :-1] >= 0)
        return self._code_loss(h.unflatten(1, (s1 - 1, levels)), rows[:, 1:], keep)

    def align_losses(
        self, items: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(text -> SID, SID -> text) losses for items [m] (module docstring)."""
        m, levels = items.shape[0], self.cfg.num_levels
        text = self.item_text[items]  # [m x A], -1 right padding
        sids = self._sid_ids(items)  # [m x L']
        bos, sep = items.new_full((m, 1), self.bos), items.new_full((m, 1), self.sep)
        # text -> SID: [BOS] text [SEP] codes[:-1]; [SEP] predicts level 0.
        seq = torch.cat([bos, text, sep, sids[:, :-1]], 1)
        p = text.shape[1] + 2
        hidden = self._run(seq, p if self.prefix_lm else 0)
        to_sid = self._code_loss(hidden[:, p - 1 : p - 1 + levels], items, items >= 0)
        # SID -> text.
        valid = text >= 0
        if self.is_encoder:  # MLM-style: masked text pieces, everything bidirectional
            u = torch.rand(text.shape, generator=generator, device="cpu").to(text.device)
            pick = (u < self.cfg.mlm_probability) & valid
            pick[:, 0] |= ~pick.any(1) & valid[:, 0]  # at least one per item
            seq = torch.cat([bos, sids, sep, text.masked_fill(pick, self.mask_id)], 1)
            hidden = self._run(seq, seq.shape[1])[:, levels + 2 :]
            z = self.text_head(hidden[pick])
            logits = z @ self._bb.word_embeddings.weight.T + self.text_bias
            return to_sid, F.cross_entropy(logits.float(), text[pick])
        # LM-style: [BOS] codes text, each text piece from the position before it.
        seq = torch.cat([bos, sids, text], 1)
        hidden = self._run(seq, 0)[:, levels : levels + text.shape[1]]
        logits = self._bb.lm_head(hidden[valid])
        return to_sid, F.cross_entropy(logits.float(), text[valid])

    # ---- scoring -------------------------------------------------------------------
    @torch.no_grad()
    def code_logits(self, history: Tensor, target: Tensor) -> list[Tensor]:
        """Teacher-forced logits of target [b]'s levels after history [b x s]: one
        [b x K_l] per level (what incremental decoding must reproduce)."""
        return self._code_logits(self._target_hidden(history, target), target)

    @torch.no_grad()
    def log_prob(self, history: Tensor, candidates: Tensor) -> Tensor:
        """Exhaustive scoring: log p(item | history) for candidates [b x c] -> [b x c]."""
        b, c = candidates.shape
        flat = candidates.reshape(-1)
        logits = self.code_logits(history.repeat_interleave(c, 0), flat)
        codes = self.item_codes[flat]
        total = sum(
            lg.float().log_softmax(-1).gather(-1, codes[:, t : t + 1])[:, 0]
            for t, lg in enumerate(logits)
        )
        return total.reshape(b, c)

    # ---- inference: the DecoderStep protocol of sidrec.decoding --------------------
    @torch.no_grad()
    def encode(
        self, history: Tensor, users: Tensor | None = None, valid: Tensor | None = None
    ) -> LMRecState:
        """The beam search's initial state for b histories [b x s] (users: unused)."""
        history = history[:, -self.cfg.max_history :]
        if valid is not None:
            history = history.masked_fill(~valid[:, -self.cfg.max_history :], -1)
        ids, ends = self._prompt(history)
        p, b = ids.shape[1], ids.shape[0]
        cache = cache_from([], self.trunk.config)
        hidden = self._run(ids, p if self.prefix_lm else 0, cache)
        h = hidden[torch.arange(b, device=ids.device), self._query_index(ends, p)]
        prompt_valid = ids >= 0
        slots = torch.zeros(b, 0, dtype=torch.long, device=ids.device)
        nodes = torch.zeros(b, dtype=torch.long, device=ids.device)
        return LMRecState(h, kv_of(cache), prompt_valid, prompt_valid.sum(1), slots, nodes)

    @torch.no_grad()
    def step(self, tokens: Tensor, state: LMRecState) -> tuple[Tensor, LMRecState]:
        """tokens: [rows x t] codes chosen so far -> logits [rows x K_t], new state.

        Step t > 0 feeds every beam's newest code as one more position of its user's
        sequence (w beams = w positions, one forward over [b x w]); a 4-D mask lets
        each see the prompt, its own ancestors and itself, so the prompt's cache is
        shared by the beams instead of copied to each."""
        rows, t = tokens.shape
        nodes, hidden, slots, kv = state.nodes, state.hidden, state.slots, state.kv
        if t > 0:
            b, p = state.prompt_valid.shape
            w, seen = rows // b, kv[0][0].shape[2]  # beams per user; cached positions
            if self.cfg.trie_softmax:
                nodes = self.trie()[0].child(t - 1, nodes, tokens[:, -1])
            own = seen + torch.arange(w, device=tokens.device).repeat(b)  # [rows]
            allowed = torch.zeros(rows, seen + w, dtype=torch.bool, device=tokens.device)
            allowed[:, :p] = state.prompt_valid.repeat_interleave(w, 0)
            allowed.scatter_(1, torch.cat([slots, own[:, None]], 1), True)
            bias = torch.zeros(allowed.shape, device=tokens.device)
            bias = bias.masked_fill(~allowed, torch.finfo(bias.dtype).min)
            cache = cache_from(kv, self.trunk.config)
            token = (tokens[:, -1] + self.offsets[t - 1] + self.text_vocab).reshape(b, w)
            out = self.trunk(
                inputs_embeds=self._embed(token),
                attention_mask=bias.reshape(b, 1, w, seen + w),
                position_ids=(state.prompt_len + t - 1)[:, None].expand(b, w),
                **{self._bb.cache_arg: cache, "use_cache": True},
            )
            hidden = out.last_hidden_state.reshape(rows, -1)
            kv, slots = kv_of(cache), torch.cat([slots, own[:, None]], 1)
        logits = self._level_logits(t, self.head(hidden), nodes)
        return logits, state._replace(hidden=hidden, kv=kv, slots=slots, nodes=nodes)

    def reorder(self, state: LMRecState, index: Tensor) -> LMRecState:
        """Row i of the new state = row index[i]; the per-user cache never moves."""
        return state._replace(
            hidden=state.hidden[index], slots=state.slots[index], nodes=state.nodes[index]
        )
