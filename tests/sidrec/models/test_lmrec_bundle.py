"""An LM-Rec bundle over the packaged MiniLM holds the backbone's name, the LoRA
adapter and the new embeddings (no base weights), and a fresh Python process
loads it and recommends exactly what the trained model does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from sidrec.data.sids import SidTable, disambiguate
from sidrec.decoding import SidTrie
from sidrec.models.bundle import Recommender, save_bundle
from sidrec.models.lmrec import lmrec, tokenize_item_texts

REPO = Path(__file__).resolve().parents[3]
N = 60

LOAD_AND_RECOMMEND = """
import json, sys
from sidrec.models.bundle import load_bundle
rec = load_bundle(sys.argv[1])
out = rec.recommend(json.loads(sys.argv[2]), k=5, exclude_seen=True)
print(json.dumps({"items": out.items.tolist(), "scores": out.scores.tolist(),
                  "kind": rec.kind, "backbone": rec.model.cfg.backbone}))
"""


def _items() -> pa.Table:
    return pa.table(
        {
            "item_id": pa.array(range(N), pa.int32()),
            "source_id": [f"I{i}" for i in range(N)],
            "title": [f"lipstick shade {i}" if i % 2 else f"shampoo {i} ml" for i in range(N)],
            "categories": [["Makeup", "Lips"] if i % 2 else ["Hair", "Shampoo"] for i in range(N)],
        }
    )


@pytest.mark.slow
def test_bundle_round_trip_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4, (N, 2))  # collisions: a disambiguation level is added
    table = SidTable(base, disambiguate(base), [4, 4])
    codes, sizes = torch.as_tensor(table.full_codes()), table.full_codebook_sizes()
    items = _items()
    torch.manual_seed(0)
    model = lmrec(codes, sizes, lora_rank=2, lora_alpha=4, max_history=5, titles=True)
    model.set_item_text(*tokenize_item_texts(model.tokenizer, items, 8, 16))
    with torch.no_grad():  # a "trained" adapter: LoRA's B starts at zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    folder = save_bundle(
        tmp_path / "bundle", "lmrec", model.cfg.to_dict(), model.state_dict(), items, table
    )
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert not any("base_layer" in k or "word_embeddings" in k for k in weights)
    assert any("lora_B" in k for k in weights) and "sid_embedding.weight" in weights
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["kind"] == "lmrec" and meta["model_config"]["backbone"] == ""

    histories = [[1, 2, 3], [7], [10, 11, 12, 13, 14, 15, 16]]
    trie = SidTrie.build(codes, sizes)
    trained = Recommender("lmrec", model, items, meta, table, trie)
    want = trained.recommend(histories, k=5, exclude_seen=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RECOMMEND, str(folder), json.dumps(histories)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there["kind"] == "lmrec" and there["backbone"] == ""
    assert there["items"] == want.items.tolist()
    torch.testing.assert_close(torch.tensor(there["scores"]), want.scores, rtol=1e-4, atol=1e-4)
