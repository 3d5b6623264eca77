"""Fixtures for the embed tests: a 200-item slice of real Beauty, tiny random HF models."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SLICE = 200  # real items, few enough that MiniLM embeds them in seconds on 2 cores


def _write_catalog(root: Path, table: pa.Table) -> Path:
    path = root / "catalog" / "items.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return root


@pytest.fixture(scope="session")
def write_catalog():
    """write_catalog(root, table) -> root, with `table` as root/catalog/items.parquet."""
    return _write_catalog


@pytest.fixture(scope="session")
def beauty_items(beauty_root) -> pa.Table:
    """The first 200 rows of the ingested Beauty catalog, all columns."""
    return pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, SLICE)


@pytest.fixture
def small_root(tmp_path, beauty_items) -> Path:
    return _write_catalog(tmp_path / "art", beauty_items)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised BERT (encoder) and GPT-2 (decoder-only) models saved to disk.

    The BERT one reuses MiniLM's WordPiece tokenizer; the GPT-2 one gets a byte-level
    BPE trained on the spot and, like real decoder-only LLMs, no pad token.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2Model,
        PreTrainedTokenizerFast,
    )

    from sidrec.embed import packaged_minilm_path

    base = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    bert = base / "tiny-bert"
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(bert)
    AutoTokenizer.from_pretrained(str(packaged_minilm_path())).save_pretrained(bert)

    gpt2 = base / "tiny-gpt2"
    bpe = ByteLevelBPETokenizer()
    corpus = [
        "Title: OPI Nail Lacquer, Simmer and Shimmer. Brand: OPI. Category: Makeup > Nails"
    ] * 5
    bpe.train_from_iterator(
        corpus, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(gpt2)
    GPT2Model(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=256,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).save_pretrained(gpt2)
    return {"bert": bert, "gpt2": gpt2}
