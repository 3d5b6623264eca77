"""A tiny randomly initialised causal LM saved to disk, built offline (tests only).

GPT-2 architecture (1 layer, 32 dims) with a byte-level BPE trained on the spot:
it reads any text, ships an end-of-text token (which the scorer appends to each
candidate) and, like real decoder-only LLMs, no pad token.
"""

from __future__ import annotations

from pathlib import Path


def save_tiny_lm(folder: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [
        "Item: OPI Nail Lacquer. Options for level 1: Makeup; Skin Care; Hair Care",
        "The best option is: Makeup > Nails > Nail Polish; Fragrance; Bath & Body",
    ] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus, vocab_size=320, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=1024,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
