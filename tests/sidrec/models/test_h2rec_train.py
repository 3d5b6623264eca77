"""H2Rec trained on a small real Beauty subset: in one process (selection on valid,
the sampled protocol beside the full catalog, the HID init from an embeddings
artifact), and through `jobs/train_recommender.py --model h2rec` on two Ray
Train workers, registered in MLflow and answering through the bundle's scoring path."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sidrec.data import load_items
from sidrec.data.sids import read_sid_table
from sidrec.distributed import RunSpec, fit, load_state
from sidrec.models.bundle import load_bundle
from sidrec.models.h2rec import pca_reduce
from sidrec.models.train import TrainConfig, h2rec_train_loop

NUM_ITEMS = 12101  # Beauty
H2REC_TINY = {
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 1,
    "ffn_dim": 16,
    "dropout": 0.2,
    "max_len": 20,
    "loss": "ce",
}


@pytest.fixture(scope="module")
def category_embeddings(beauty_root):
    """An embeddings artifact (the stage's parquet format) from the real category
    paths, hashed into 32 dims: real item structure without a 4-minute encoder run."""
    path = beauty_root / "embeddings" / "categories-hashed.parquet"
    if not path.exists():
        paths = load_items(beauty_root).column("categories").to_pylist()
        emb = np.zeros((len(paths), 32), np.float32)
        for i, cats in enumerate(paths):
            for depth, name in enumerate(cats):
                slot = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 32
                emb[i, slot] += 1.0 / (depth + 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "item_id": pa.array(np.arange(len(paths), dtype=np.int32)),
                "embedding": pa.array(emb.tolist(), pa.list_(pa.float32(), 32)),
            }
        )
        pq.write_table(table, path)
    return path


def test_h2rec_loop_trains_selects_and_reports_both_protocols(
    tmp_path, beauty_root, beauty_sids, category_embeddings
):
    config = {
        "root": str(beauty_root),
        "sids": str(beauty_sids),
        "embeddings": str(category_embeddings),
        "arch": H2REC_TINY,
        "h2rec": {"beta": 0.1, "gamma": 0.1, "code_threshold": 2, "window": 3},
        "max_users": 300,
        "epochs": 3,
        "lr": 3e-3,
        "sampled_negatives": 100,
    }
    out = fit(h2rec_train_loop, config, RunSpec(name="h2rec", storage_path=str(tmp_path)))
    epochs, final = out.history[:-1], out.history[-1]
    assert [m["epoch"] for m in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    best = max(epochs, key=lambda m: m["valid/ndcg@10"])
    assert final["best_epoch"] == best["epoch"]
    for prefix in ("", "exclude_seen/", "sampled100/"):
        assert final[f"test/{prefix}count"] == 300
        assert final[f"test/{prefix}head/count"] + final[f"test/{prefix}tail/count"] == 300
    # 100 negatives the user never touched are a subset of the catalog's competitors:
    # the sampled rank can only be better, so its recall is at least the full one.
    for k in (1, 5, 10, 20):
        assert final[f"test/sampled100/recall@{k}"] >= final[f"test/recall@{k}"]
    assert final["test/sampled100/recall@20"] > final["test/recall@20"]
    state = load_state(out.checkpoint)
    assert state["done"] and state["kind"] == "h2rec"
    best_model = state["best_model"]
    table = read_sid_table(beauty_sids)
    offsets = np.concatenate([[0], np.cumsum(table.codebook_sizes)[:-1]])
    # The SID codes travel in the weights (a buffer), without the disambiguation suffix.
    assert np.array_equal(best_model["item_codes"][:NUM_ITEMS].numpy(), table.codes + offsets)
    assert best_model["hid.weight"].shape == (NUM_ITEMS + 1, 16)


def test_hid_table_starts_from_the_reduced_embeddings(
    beauty_root, beauty_sids, category_embeddings
):
    from sidrec.data.embeddings import load_embeddings
    from sidrec.models.train import build_h2rec

    cfg = TrainConfig.from_dict(
        {
            "root": str(beauty_root),
            "sids": str(beauty_sids),
            "embeddings": str(category_embeddings),
            "arch": H2REC_TINY,
        }
    )
    model = build_h2rec(cfg, NUM_ITEMS)
    emb = torch.as_tensor(load_embeddings(category_embeddings))
    std = (2.0 / (NUM_ITEMS + 1 + 16)) ** 0.5
    torch.testing.assert_close(model.hid.weight[:NUM_ITEMS], pca_reduce(emb, 16, std))


def test_unknown_h2rec_knobs_and_missing_sids_are_named(beauty_root):
    with pytest.raises(ValueError, match=r"h2rec: unknown keys \['betta'\]"):
        TrainConfig.from_dict({"root": str(beauty_root), "h2rec": {"betta": 0.1}})
    from sidrec.models.train import build_h2rec

    with pytest.raises(ValueError, match="H2Rec needs a SID table"):
        build_h2rec(TrainConfig.from_dict({"root": str(beauty_root)}), NUM_ITEMS)


@pytest.mark.slow
def test_job_trains_h2rec_on_two_ray_workers_and_serves_it(
    tmp_path, data_dir, beauty_root, beauty_sids, category_embeddings, ray_session, load_job
):
    job = load_job("train_recommender")
    args = job.parse_args(
        [
            "--model", "h2rec", "--loss", "ce",
            "--sids", str(beauty_sids), "--embeddings", str(category_embeddings),
            "--beta", "0.2", "--window", "2", "--sampled-negatives", "100",
            "--dataset", "beauty", "--data-dir", str(data_dir),
            "--artifact-root", str(beauty_root), "--max-users", "400",
            "--num-workers", "2", "--arch", json.dumps(H2REC_TINY),
            "--epochs", "2", "--batch-size", "64", "--alias", "ci",
        ]
    )  # fmt: skip
    record = job.main(args)
    knobs = record["config"]["h2rec"]  # every knob spelled out, the flags' over the defaults
    assert record["model"] == "h2rec" and (knobs["beta"], knobs["window"]) == (0.2, 2)
    assert (knobs["gamma"], knobs["code_threshold"], knobs["backbone"]) == (0.1, 2, "sasrec")
    test = record["test"]
    assert test["count"] == 400 and test["sampled100/count"] == 400
    assert test["head/count"] + test["tail/count"] == 400
    assert record["registered"] == "models:/sidrec-h2rec-beauty@ci"

    rec = load_bundle(record["registered"], tracking_uri=f"sqlite:///{beauty_root / 'mlflow.db'}")
    assert rec.kind == "h2rec"
    out = rec.recommend([[1, 2, 3], [10]], k=10)
    assert out.items.shape == (2, 10)
    for row in out.items.tolist():
        assert len(set(row)) == 10 and all(0 <= i < NUM_ITEMS for i in row)
    # The full-catalog scores are the model's Eq. 9 scores, top-k in order.
    scores = rec.model.score([np.array([1, 2, 3])])[0]
    assert out.items[0].tolist() == scores.topk(10).indices.tolist()
    unseen = rec.recommend([[1, 2, 3]], k=10, exclude_seen=True).items[0].tolist()
    assert not {1, 2, 3} & set(unseen)
    info = rec.describe(out.items[0].tolist())
    assert all(row["title"] for row in info) and all(len(row["sid"]) == 4 for row in info)
