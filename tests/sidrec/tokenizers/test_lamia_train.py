"""LAMIA's train loop on sidrec.engine, in this process on the first 120 Beauty
items with a tiny MiniLM-small palette model: tokenized after every epoch in one
run (what a sweep asks for), resumed with more epochs, refused with another config."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from sidrec.distributed import RunSpec, fit, load_state
from sidrec.tokenizers.lamia import lamia_minilm_small, train_loop

# A palette model and a k-means per epoch: seconds, not the fast tier's budget.
pytestmark = pytest.mark.slow

ITEMS = 120


@pytest.fixture(scope="module")
def items(tmp_path_factory, beauty_root):
    path = tmp_path_factory.mktemp("lamia-loop") / "items.parquet"
    table = pq.read_table(beauty_root / "catalog" / "items.parquet").slice(0, ITEMS)
    pq.write_table(table, path)
    return str(path)


def _tiny(**changes):
    cfg = lamia_minilm_small()
    backbone = dataclasses.replace(
        cfg.backbone,
        decoder_dim=64,
        decoder_ffn=128,
        decoder_layers=1,
        max_content_tokens=24,
        max_answer_tokens=8,
    )
    values = dict(
        train_items=64,
        batch_size=32,
        codebook_size=8,
        pca_dim=16,
        kmeans_iters=3,
        num_palette=2,
        palette_batch_size=64,
        epochs=2,
    )
    return dataclasses.replace(cfg, backbone=backbone, **{**values, **changes})


def test_one_run_tokenizes_every_epoch_and_resumes_with_more(tmp_path, items):
    run = RunSpec("lamia", str(tmp_path))
    sweep = fit(train_loop, {"lamia": _tiny(), "items": items, "tokenize_every": 1}, run)
    # One report per epoch, each with the SID metrics, from one run (no re-runs).
    assert [(m["epoch"], m["start_epoch"]) for m in sweep.history] == [(0, 0), (1, 0)]
    assert all(0 <= m["collision_rate"] <= 1 and m["steps"] == 2 for m in sweep.history)
    assert all("train/loss" in m and "palette/intra_cos" in m for m in sweep.history)
    state = load_state(sweep.checkpoint)
    assert state["codes"].shape == (ITEMS, 2) and state["learner"] == "lamia"
    # More epochs: resumes at epoch 2 and tokenizes after the last one.
    more = fit(train_loop, {"lamia": _tiny(epochs=3), "items": items}, run)
    assert [(m["epoch"], m["start_epoch"]) for m in more.history] == [(2, 2)]
    assert "collision_rate" in more.metrics
    with pytest.raises(ValueError, match=r"another config \(fields \['gamma'\]"):
        fit(train_loop, {"lamia": _tiny(epochs=4, gamma=0.0), "items": items}, run)
