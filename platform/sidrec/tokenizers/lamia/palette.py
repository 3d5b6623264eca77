"""The LAMIA palette model over any Hugging Face decoder-only causal LM (§4.2.1–4.2.2).

OPT-350M with LoRA (rank 128) in the paper; any `AutoModelForCausalLM` whose
last hidden state has the width of its input embeddings (OPT, GPT-2, Llama,
Qwen…) works, since the palette is fed back as input embeddings.

Block-wise input and the dual forward pass:

    pass 1   content ‖ LaP            → the LaP outputs are the palette  p: [b x L x e]
    pass 2   LdP := p ‖ task ‖ answer → next-token logits on the answer

The hierarchical mask (`_mask.py`) closes every path from the task block to
content and LaP, so in the literal single-sequence form (content ‖ LaP ‖ LdP ‖
task, run twice, the second time with the LdP inputs replaced by the first
pass's LaP outputs; `reference_loss`) the task block's states depend on the
content only through p. `forward` computes exactly the same thing with the
closed blocks left out of each pass (pass 1 without LdP ‖ task, pass 2
without content ‖ LaP, the position ids kept as in the full row); a test
checks the two against each other. One palette per item serves all of its
attribute tasks.

    model = decoder_palette(backbone_cfg, num_palette=4, num_tasks=3)
    ids, valid = model.tokenize_content(texts)
    gen, palette = model(ids, valid, task_item, task_id, *model.tokenize_answers(answers))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sidrec.tokenizers.lamia._mask import (
    CONTENT,
    PALETTE,
    PLACEHOLDER,
    TASK,
    additive,
    block_mask,
    packed_positions,
)
from sidrec.tokenizers.lamia.losses import generative_loss

__all__ = ["DecoderBackbone", "DecoderPalette", "decoder_palette"]


@dataclass(frozen=True)
class DecoderBackbone:
    """Which causal LM, and how LoRA adapts it."""

    # Local folder (or hub id where the hub is reachable) of the LM's weights.
    # "" with `random_config` set = a randomly initialized LM (tests, smoke runs).
    model_path: str = ""
    # Tokenizer folder; "" = model_path. A random LM may borrow any tokenizer
    # whose vocabulary fits its vocab_size.
    tokenizer_path: str = ""
    # transformers config kwargs with "model_type" (e.g. a tiny OPT), used
    # instead of pretrained weights; None = load model_path.
    random_config: dict[str, Any] | None = None
    lora_rank: int = 128  # LAMIA §5.1: LoRA rank 128 on OPT-350M
    lora_alpha: int = 256  # 2 x rank, the usual scaling (the paper does not state it)
    lora_dropout: float = 0.05
    # "all-linear": every linear layer but the LM head, for any architecture
    # (OPT q/k/v/out/fc, GPT-2's Conv1D c_attn/c_proj...).
    lora_targets: str = "all-linear"
    max_content_tokens: int = 128  # item text in the content block
    max_answer_tokens: int = 32  # attribute text to regenerate (+ EOS)

    def build(self, num_palette: int, num_tasks: int, answers: list[str]) -> DecoderPalette:
        del answers  # the LM's own vocabulary covers every answer
        return decoder_palette(self, num_palette, num_tasks)


def _load_lm(cfg: DecoderBackbone):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok_path = cfg.tokenizer_path or cfg.model_path
    if not tok_path:
        raise ValueError("DecoderBackbone: set model_path (or tokenizer_path with random_config)")
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    if cfg.random_config is not None:
        params = dict(cfg.random_config)
        lm_config = AutoConfig.for_model(params.pop("model_type"), **params)
        lm = AutoModelForCausalLM.from_config(lm_config)
    else:
        lm = AutoModelForCausalLM.from_pretrained(cfg.model_path)
    return tokenizer, lm


def decoder_palette(cfg: DecoderBackbone, num_palette: int, num_tasks: int) -> DecoderPalette:
    """The LM from cfg, wrapped with LoRA (PEFT), plus the palette and task tokens."""
    from peft import LoraConfig, get_peft_model

    tokenizer, lm = _load_lm(cfg)
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
        bias="none",
    )
    return DecoderPalette(get_peft_model(lm, lora), tokenizer, cfg, num_palette, num_tasks)


class DecoderPalette(nn.Module):
    def __init__(
        self, lm: nn.Module, tokenizer, cfg: DecoderBackbone, num_palette: int, num_tasks: int
    ):
        super().__init__()
        self.lm = lm  # a PeftModel: LoRA trainable, base weights frozen
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.num_palette = num_palette
        embed = self.causal_lm.get_input_embeddings()
        width = embed.weight.shape[1]
        hidden = getattr(self.causal_lm.config, "word_embed_proj_dim", None) or width
        if hidden != width:
            raise ValueError(
                f"the LM's last hidden state ({hidden}) and input embeddings ({width}) differ: "
                "the palette cannot be fed back as LdP inputs"
            )
        scale = float(embed.weight.detach().float().std())
        # LaP (§4.2.1): L learnable tokens whose outputs become the palette.
        self.palette_tokens = nn.Parameter(torch.randn(num_palette, width) * scale)
        # One learnable task token per attribute task.
        self.task_tokens = nn.Parameter(torch.randn(num_tasks, width) * scale)
        # LdP inputs of pass 1 (closed off from everything the loss reads, so
        # any value gives the same result); pass 2 puts the palette here.
        self.register_buffer("placeholders", torch.zeros(num_palette, width), persistent=False)
        self.eos_id = (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    @property
    def causal_lm(self) -> nn.Module:
        """The CausalLM with LoRA layers injected (PEFT modifies it in place)."""
        return self.lm.get_base_model()

    @property
    def palette_dim(self) -> int:
        return int(self.palette_tokens.shape[1])

    # ---- text → ids -----------------------------------------------------------
    def tokenize_content(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """ids, valid: [b x n_c] (right-padded)."""
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.cfg.max_content_tokens,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"].bool()

    def tokenize_answers(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """ids, valid: [m x n_a], each answer's tokens then EOS, right-padded."""
        rows = self.tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=self.cfg.max_answer_tokens
        )["input_ids"]
        return _pad([r + [self.eos_id] for r in rows], self.pad_id)

    # ---- the two passes -------------------------------------------------------
    def _run(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        """x: [b x S x e] input embeddings; mask: [b x S x S] bool → last hidden [b x S x e]."""
        body = self.causal_lm.base_model
        out = body(inputs_embeds=x, attention_mask=additive(mask, x.dtype), position_ids=positions)
        return out.last_hidden_state

    def palette(self, ids: Tensor, valid: Tensor) -> Tensor:
        """Pass 1. ids, valid: [b x n_c] → palette [b x L x e] (the LaP outputs)."""
        b, n = ids.shape
        x = torch.cat([self._embed(ids), self.palette_tokens.expand(b, -1, -1).to(self._dtype)], 1)
        keys = torch.cat([valid, valid.new_ones(b, self.num_palette)], 1)
        mask = block_mask([(CONTENT, n), (PALETTE, self.num_palette)], keys)
        return self._run(x, mask.to(x.device), packed_positions(keys))[:, n:]

    def answer_loss(
        self,
        palette: Tensor,
        start: Tensor,
        task_id: Tensor,
        answer_ids: Tensor,
        answer_valid: Tensor,
    ) -> Tensor:
        """Pass 2. palette: [m x L x e] (one row per task); start: [m] position id of
        the first LdP token (= content length + L); task_id: [m]; answers [m x n_a]."""
        m, n_a = answer_ids.shape
        t_in = torch.cat(
            [self.task_tokens[task_id][:, None].to(self._dtype), self._embed(answer_ids[:, :-1])], 1
        )
        x = torch.cat([palette.to(self._dtype), t_in], 1)
        t_valid = torch.cat([answer_valid.new_ones(m, 1), answer_valid[:, :-1]], 1)
        keys = torch.cat([answer_valid.new_ones(m, self.num_palette), t_valid], 1)
        mask = block_mask([(PLACEHOLDER, self.num_palette), (TASK, n_a)], keys)
        h = self._run(x, mask.to(x.device), packed_positions(keys, start))
        logits = self.causal_lm.get_output_embeddings()(h[:, self.num_palette :])
        return generative_loss(logits, answer_ids, answer_valid)

    def forward(
        self,
        ids: Tensor,
        valid: Tensor,
        task_item: Tensor,
        task_id: Tensor,
        answer_ids: Tensor,
        answer_valid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """The dual forward pass: (L_gen, palette [b x L x e])."""
        palette = self.palette(ids, valid)
        start = valid.sum(1)[task_item] + self.num_palette
        gen = self.answer_loss(palette[task_item], start, task_id, answer_ids, answer_valid)
        return gen, palette

    def reference_loss(
        self,
        ids: Tensor,
        valid: Tensor,
        task_item: Tensor,
        task_id: Tensor,
        answer_ids: Tensor,
        answer_valid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """The paper's literal form: one row content ‖ LaP ‖ LdP ‖ task per task,
        run twice over the full hierarchical mask. Slow; for tests."""
        m, n_a = answer_ids.shape
        n, L = ids.shape[1], self.num_palette
        content = self._embed(ids)[task_item]
        t_in = torch.cat(
            [self.task_tokens[task_id][:, None].to(self._dtype), self._embed(answer_ids[:, :-1])], 1
        )
        t_valid = torch.cat([answer_valid.new_ones(m, 1), answer_valid[:, :-1]], 1)
        ones = valid.new_ones(m, L)
        keys = torch.cat([valid[task_item], ones, ones, t_valid], 1)
        blocks = [(CONTENT, n), (PALETTE, L), (PLACEHOLDER, L), (TASK, n_a)]
        mask = block_mask(blocks, keys).to(content.device)
        positions = packed_positions(keys)

        def row(placeholder: Tensor) -> Tensor:
            lap = self.palette_tokens.expand(m, -1, -1).to(self._dtype)
            return torch.cat([content, lap, placeholder, t_in], 1)

        first = self._run(row(self.placeholders.expand(m, -1, -1).to(self._dtype)), mask, positions)
        palette = first[:, n : n + L]
        second = self._run(row(palette), mask, positions)
        logits = self.causal_lm.get_output_embeddings()(second[:, n + 2 * L :])
        return generative_loss(logits, answer_ids, answer_valid), palette

    # ---- helpers ----------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return self.causal_lm.get_input_embeddings().weight.dtype

    def _embed(self, ids: Tensor) -> Tensor:
        return self.causal_lm.get_input_embeddings()(ids)


def _pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad token lists: ids, valid [m x max_len]."""
    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        valid[i, : len(r)] = True
    return ids, valid
