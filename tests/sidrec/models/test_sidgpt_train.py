"""SID-GPT's train loop on real Beauty users: it learns (valid R@10 well above
MostPopular on the same users after a few epochs), and its GPU knobs run on CPU
(bf16 autocast, torch.compile through inductor)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from sidrec.data import load_items, load_split, train_item_counts
from sidrec.distributed import RunSpec, fit
from sidrec.eval.runner import evaluate_scorer
from sidrec.models._data import first_users
from sidrec.models.popularity import MostPopular
from sidrec.models.train import sidgpt_train_loop

HERE = Path(__file__).resolve().parent
SIDGPT_TINY = {
    "d_model": 32,
    "num_layers": 1,
    "num_heads": 1,
    "ffn_dim": 32,
    "dropout": 0.2,
    "max_len": 20,
}


def _category_sids(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("sid_helpers", HERE / "sid_helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_category_sids(root)


@pytest.mark.slow
def test_sidgpt_learns_well_above_most_popular(tmp_path, beauty_root):
    users = 3000
    config = {
        "root": str(beauty_root),
        "sids": str(_category_sids(beauty_root)),
        "arch": SIDGPT_TINY,
        "max_users": users,
        "epochs": 6,
        "lr": 5e-3,
        "batch_size": 128,
    }
    out = fit(sidgpt_train_loop, config, RunSpec(name="sidgpt", storage_path=str(tmp_path)))
    epochs = out.history[:-1]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    best_valid = max(m["valid/recall@10"] for m in epochs)
    n = load_items(beauty_root).num_rows
    popular = MostPopular(train_item_counts(beauty_root, n))
    valid = first_users(load_split(beauty_root, "valid"), users)
    floor = evaluate_scorer(popular.score, valid, n)["recall@10"]
    assert best_valid >= 2 * floor, (best_valid, floor)


@pytest.mark.slow
def test_bf16_autocast_and_inductor_compile_run_on_cpu(tmp_path, beauty_root):
    config = {
        "root": str(beauty_root),
        "sids": str(_category_sids(beauty_root)),
        # with the sampled seen-item term, whose rows join the head's (models/_unlikelihood.py)
        "arch": {**SIDGPT_TINY, "d_model": 16, "ffn_dim": 16, "seen_penalty": 1.0},
        "max_users": 200,
        "epochs": 1,
        "bf16": True,
        "compile": True,
    }
    torch._dynamo.reset()
    out = fit(
        sidgpt_train_loop, config, RunSpec(name="sidgpt-gpu-knobs", storage_path=str(tmp_path))
    )
    first, final = out.history[0], out.history[-1]
    assert torch.isfinite(torch.tensor(first["loss"])) and first["steps"] > 0
    assert final["test/count"] == 200
