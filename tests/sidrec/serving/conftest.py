"""Serving bundles over the real Beauty catalog: a tiny SASRec, TIGER, SID-GPT, H2Rec and
LM-Rec (all but SASRec on category-derived SIDs; LM-Rec on a tiny random BERT), randomly initialized (these tests check the plumbing:
ids, limits, batching, cold start; quality lives in bench/ and docs/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from sidrec.data import load_items
from sidrec.data.catalog import train_item_counts
from sidrec.data.sids import read_sid_table
from sidrec.models._hf_backbone import packaged_minilm_path
from sidrec.models.bundle import prefix_labels, save_bundle
from sidrec.models.h2rec import h2rec
from sidrec.models.lmrec import lmrec
from sidrec.models.sasrec import sasrec
from sidrec.models.sidgpt import sidgpt
from sidrec.models.tiger import tiger

TESTS = Path(__file__).resolve().parents[2]


def _sid_helpers():
    path = TESTS / "sidrec" / "models" / "sid_helpers.py"
    spec = importlib.util.spec_from_file_location("sid_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_bundles(root: Path, out: Path, seed: int = 0) -> dict[str, Path]:
    """{"sasrec" | "tiger" | "sidgpt" | "h2rec" | "lmrec": bundle folder} for the Beauty catalog under root."""
    torch.manual_seed(seed)
    items = load_items(root)
    n = items.num_rows
    counts = train_item_counts(root, n)
    table = read_sid_table(_sid_helpers().write_category_sids(root), num_items=n)
    labels = prefix_labels(table, items)  # once for all the bundles on this table
    sas = sasrec(
        n, d_model=16, num_layers=1, num_heads=1, ffn_dim=16, dropout=0.0, max_len=20, loss="ce"
    )
    tig = tiger(
        table.full_codes(),
        table.full_codebook_sizes(),
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_model=32,
        num_heads=2,
        head_dim=16,
        ffn_dim=64,
        dropout=0.0,
        num_user_tokens=10,
        max_history=20,
        hierarchy_aware=False,
    )
    gpt = sidgpt(
        table.full_codes(), table.full_codebook_sizes(), d_model=16, num_layers=1, num_heads=1,
        ffn_dim=16, dropout=0.0, max_len=20,
    )  # fmt: skip
    h2 = h2rec(
        table.codes, table.codebook_sizes, d_model=16, num_layers=1, num_heads=1, ffn_dim=16,
        dropout=0.0, max_len=20,
    )  # fmt: skip
    # A random 1-layer BERT borrowing MiniLM's tokenizer: its weights travel in the bundle.
    bert = {
        "model_type": "bert",
        "vocab_size": 30522,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "intermediate_size": 16,
        "max_position_embeddings": 128,
    }
    lm = lmrec(
        table.full_codes(),
        table.full_codebook_sizes(),
        tokenizer=packaged_minilm_path(),
        random_config=bert,
        lora_rank=2,
        lora_alpha=4,
    )
    return {
        "lmrec": save_bundle(
            out / "lmrec", "lmrec", lm.cfg.to_dict(), lm.state_dict(), items, table,
            popularity=counts, sid_labels=labels,
        ),
        "h2rec": save_bundle(
            out / "h2rec", "h2rec", h2.cfg.to_dict(), h2.state_dict(), items, table,
            popularity=counts, sid_labels=labels,
        ),
        "sasrec": save_bundle(
            out / "sasrec", "sasrec", sas.cfg.to_dict(), sas.state_dict(), items,
            popularity=counts,
        ),
        "tiger": save_bundle(
            out / "tiger", "tiger", tig.cfg.to_dict(), tig.state_dict(), items, table,
            popularity=counts, sid_labels=labels,
        ),
        "sidgpt": save_bundle(
            out / "sidgpt", "sidgpt", gpt.cfg.to_dict(), gpt.state_dict(), items, table,
            popularity=counts, sid_labels=labels,
        ),
    }  # fmt: skip


@pytest.fixture(scope="session")
def beauty_bundles(beauty_root, tmp_path_factory) -> dict[str, Path]:
    return write_bundles(beauty_root, tmp_path_factory.mktemp("bundles"))
