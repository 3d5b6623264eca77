"""The train loops in one process on a real Beauty subset: selection on valid, test once,
checkpoints that resume; plus the batching and exclude_seen helpers they rely on."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import sidrec.progress as progress_module
from sidrec.data import load_split, train_sequences
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.models._data import (
    Rows,
    first_users,
    full_history_split,
    length_buckets,
    sequence_rows,
)
from sidrec.models._topk import drop_seen
from sidrec.models.train import TrainConfig, sasrec_train_loop, tiger_train_loop
from sidrec.models.train._common import epoch_batches

SASREC_TINY = {
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 1,
    "ffn_dim": 16,
    "dropout": 0.2,
    "max_len": 20,
    "loss": "ce",
}
TIGER_TINY = {
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "d_model": 32,
    "num_heads": 2,
    "head_dim": 16,
    "ffn_dim": 64,
    "dropout": 0.1,
    "num_user_tokens": 50,
    "max_history": 20,
    "hierarchy_aware": False,
}


def test_sasrec_loop_selects_on_valid_and_tests_once(tmp_path, beauty_root):
    config = {
        "root": str(beauty_root),
        "arch": SASREC_TINY,
        "max_users": 300,
        "epochs": 3,
        "lr": 3e-3,
    }
    out = fit(sasrec_train_loop, config, RunSpec(name="sasrec", storage_path=str(tmp_path)))
    epochs, final = out.history[:-1], out.history[-1]
    assert [m["epoch"] for m in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert all("valid/ndcg@10" in m and not any(k.startswith("test/") for k in m) for m in epochs)
    best = max(epochs, key=lambda m: m["valid/ndcg@10"])
    assert final["best_epoch"] == best["epoch"]
    assert final["test/count"] == 300 and final["test/exclude_seen/count"] == 300
    assert final["test/head/count"] + final["test/tail/count"] == 300
    assert 0 <= final["test/ndcg@10"] <= final["test/recall@10"] <= final["test/recall@20"] <= 1
    state = load_state(out.checkpoint)
    assert state["done"] and state["kind"] == "sasrec"
    assert state["test_metrics"]["recall@10"] == final["test/recall@10"]
    assert state["best_model"]["items.weight"].shape == (12102, 16)


def test_sasrec_honours_weight_decay(tmp_path, beauty_root):
    """AdamW's decoupled decay shrinks the item table; 0 (the recipe) is Adam's update."""

    def item_norm(weight_decay: float) -> float:
        config = {
            "root": str(beauty_root),
            "arch": {**SASREC_TINY, "dropout": 0.0},
            "max_users": 128,
            "batch_size": 32,
            "epochs": 1,
            "lr": 3e-3,
            "weight_decay": weight_decay,
        }
        spec = RunSpec(name=f"wd{weight_decay}", storage_path=str(tmp_path))
        state = load_state(fit(sasrec_train_loop, config, spec).checkpoint)
        return float(state["best_model"]["items.weight"].norm())

    # 4 steps at lr 3e-3: (1 - lr * 10)^4 = 0.89 of the table's norm.
    assert item_norm(10.0) < 0.95 * item_norm(0.0)


@pytest.mark.slow
def test_sasrec_seen_penalty_trains_under_bf16_autocast_and_inductor_compile(tmp_path, beauty_root):
    """The seen-item term's hand-written backward (models/sasrec.py) through the GPU knobs."""
    config = {
        "root": str(beauty_root),
        "arch": {**SASREC_TINY, "seen_penalty": 1.0},
        "max_users": 200,
        "epochs": 1,
        "bf16": True,
        "compile": True,
    }
    torch._dynamo.reset()
    out = fit(sasrec_train_loop, config, RunSpec(name="seen", storage_path=str(tmp_path)))
    first, final = out.history[0], out.history[-1]
    assert np.isfinite(first["loss"]) and first["steps"] > 0
    assert final["test/count"] == 200
    assert load_state(out.checkpoint)["best_model"]["items.weight"].isfinite().all()


def test_tiger_loop_resumes_from_its_checkpoint_and_stops_early(tmp_path, beauty_root, beauty_sids):
    run = RunSpec(name="tiger", storage_path=str(tmp_path))
    config = {
        "root": str(beauty_root),
        "sids": str(beauty_sids),
        "arch": TIGER_TINY,
        "max_users": 200,
        "batch_size": 128,
        "lr": 3e-3,
        "epochs": 1,
        "beam_width": 20,
    }
    first = fit(tiger_train_loop, config, run)
    assert first.history[-1]["test/count"] == 200
    # The same run with a higher budget continues after epoch 0; patience 1 with
    # a huge learning rate makes the valid metric stall and stops it early.
    second = fit(tiger_train_loop, {**config, "epochs": 6, "patience": 1, "lr": 5.0}, run)
    assert second.history[0]["epoch"] == 1 and second.history[0]["start_epoch"] == 1
    assert second.history[-1]["epochs_run"] < 6
    assert "test/exclude_seen/recall@20" in second.history[-1]


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({"root": "x", "learning_rate": 1e-3})


def test_length_buckets_are_dense_complete_and_reproducible():
    lengths = np.array([3, 1, 3, 2, 3, 1, 2, 3, 3])
    batches = length_buckets(lengths, batch_size=2, rng=np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(9))
    assert all(len(set(lengths[b])) == 1 and len(b) <= 2 for b in batches)
    again = length_buckets(lengths, batch_size=2, rng=np.random.default_rng(0))
    assert [b.tolist() for b in batches] == [b.tolist() for b in again]
    two_ranks = length_buckets(lengths, batch_size=2, rng=np.random.default_rng(0), min_size=2)
    assert all(len(b) == 2 for b in two_ranks)


def test_the_first_epoch_s_progress_lines_carry_the_step_total(
    tmp_path, beauty_root, monkeypatch, caplog
):
    # Every step gets a line (no 10 s of silence needed), as a log, not a bar.
    monkeypatch.setattr(progress_module, "EVERY_S", 0.0)
    monkeypatch.setenv("SIDREC_PROGRESS", "log")
    caplog.set_level(logging.INFO, logger="sidrec")
    config = {
        "root": str(beauty_root),
        "arch": SASREC_TINY,
        "max_users": 100,
        "batch_size": 32,
        "epochs": 1,
    }
    fit(sasrec_train_loop, config, RunSpec(name="progress", storage_path=str(tmp_path)))
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "sidrec.progress" and r.getMessage().startswith("sasrec epoch 0 ")
    ]
    first = re.fullmatch(r"sasrec epoch 0 1/(\d+) steps \(\d+ s, ~\d+ s left\) loss=\S+", lines[0])
    assert first, lines[0]  # before any epoch ran: "sasrec epoch 0 1 steps (0 s) ..."
    total = int(first.group(1))
    assert len(lines) == total and lines[-1].startswith(f"sasrec epoch 0 {total}/{total} steps")


def test_an_epoch_s_batches_are_counted_before_they_run():
    lengths = np.array([3, 1, 3, 2, 3, 1, 2, 3, 2, 2])  # 2 rows of length 1, 4 of 2, 4 of 3
    rows = Rows(np.arange(10), np.zeros((10, 3), dtype=np.int64), lengths, np.zeros(10))
    cfg = SimpleNamespace(seed=0, batch_size=2)
    for rank in (0, 1):
        reporter = SimpleNamespace(world_size=2, rank=rank)
        batches = epoch_batches(rows, cfg, 0, reporter, torch.device("cpu"))
        pairs = list(batches)
        assert len(batches) == len(pairs) == 5  # every batch of 2 rows, one row per rank
        assert all(len(idx) == 1 and lengths[int(idx[0])] == n for idx, n in pairs)
        made = list(batches.map(lambda idx, n: (idx.tolist(), n)))
        assert len(batches.map(lambda idx, n: n)) == 5
        assert made == [(idx.tolist(), n) for idx, n in pairs]


def test_full_histories_extend_the_capped_split_histories(beauty_root):
    seqs = train_sequences(beauty_root)
    valid = first_users(load_split(beauty_root, "valid"), 500)
    test = first_users(load_split(beauty_root, "test"), 500)
    full_valid = full_history_split(valid, seqs, None)
    full_test = full_history_split(test, seqs, valid)
    for capped, full in ((valid, full_valid), (test, full_test)):
        for i in range(len(capped)):
            h, f = capped.history(i), full.history(i)
            assert len(f) >= len(h) and np.array_equal(f[len(f) - len(h) :], h)
    rows = sequence_rows(seqs, max_len=50, max_users=500)
    assert rows.history.shape[1] == 51 and int(rows.lengths.min()) >= 2


def test_drop_seen_moves_unseen_items_up():
    topk = torch.tensor([[5, 2, 7, -1], [1, 2, 3, 4]])
    seen = torch.zeros(2, 10, dtype=torch.bool)
    seen[0, 2] = seen[1, 1] = seen[1, 3] = True
    scores = torch.tensor([[0.0, -1.0, -2.0, -torch.inf], [0.0, -1.0, -2.0, -3.0]])
    items, kept = drop_seen(topk, seen, scores)
    assert items.tolist() == [[5, 7, -1, -1], [2, 4, -1, -1]]
    assert kept.tolist() == [
        [0.0, -2.0, -torch.inf, -torch.inf],
        [-1.0, -3.0, -torch.inf, -torch.inf],
    ]
