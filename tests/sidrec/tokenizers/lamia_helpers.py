"""Tiny LAMIA palette models for tests: a randomly initialized OPT (decoder-only
path) sharing the packaged MiniLM's word-piece tokenizer, and the MiniLM
encoder backbone itself."""

from __future__ import annotations

from sidrec.tokenizers.lamia.encoder import packaged_minilm
from sidrec.tokenizers.lamia.palette import DecoderBackbone, decoder_palette

TINY_OPT = {
    "model_type": "opt",
    "vocab_size": 30522,  # the MiniLM tokenizer's vocabulary
    "hidden_size": 32,
    "word_embed_proj_dim": 32,
    "num_hidden_layers": 2,
    "ffn_dim": 64,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    # Wide init: with the default 0.02 the frozen tied head cannot move logits
    # far from uniform over 30k tokens, and a learning test has nothing to see.
    "init_std": 0.3,
    "pad_token_id": 0,
    "bos_token_id": 101,
    "eos_token_id": 102,
}


def tiny_decoder_backbone(**changes) -> DecoderBackbone:
    values = dict(
        tokenizer_path=packaged_minilm(),
        random_config=TINY_OPT,
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.0,
        max_content_tokens=48,
        max_answer_tokens=16,
    )
    values.update(changes)
    return DecoderBackbone(**values)


def tiny_decoder_palette(num_palette: int = 4, num_tasks: int = 3):
    return decoder_palette(tiny_decoder_backbone(), num_palette, num_tasks)
