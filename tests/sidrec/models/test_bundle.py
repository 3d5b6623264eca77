"""Serving bundles: a saved model loads back identical and recommends real items."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from sidrec.data.sids import SidTable, disambiguate
from sidrec.decoding import random_sid_table
from sidrec.models._topk import drop_flagged, drop_seen
from sidrec.models.bundle import _mask_seen_, _seen_among, load_bundle, save_bundle
from sidrec.models.sasrec import sasrec
from sidrec.models.tiger import tiger

N = 30


def items_table(n=N):
    return pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int32)),
            "source_id": [f"A{i:04d}" for i in range(n)],
            "title": [f"item {i}" for i in range(n)],
            "text": [""] * n,
            "categories": [["Makeup", "Nails"] if i % 2 else ["Skin Care"] for i in range(n)],
        }
    )


def sid_table(n=N):
    codes = random_sid_table(n, [4, 4, 4], seed=3).numpy()
    codes[1] = codes[0]  # a collision: needs the disambiguation level
    tags = [["Makeup", "Nails", ""] if i % 2 else ["Skin Care", "", ""] for i in range(n)]
    return SidTable(codes, disambiguate(codes), [4, 4, 4], tags=tags, meta={"learner": "test"})


def test_sasrec_bundle_round_trip(tmp_path):
    torch.manual_seed(0)
    model = sasrec(
        N, d_model=8, num_layers=1, num_heads=1, ffn_dim=8, dropout=0.0, max_len=5, loss="bce"
    )
    folder = save_bundle(
        tmp_path / "b", "sasrec", model.cfg.to_dict(), model.state_dict(), items_table()
    )
    rec = load_bundle(folder)
    histories = [[1, 2, 3], [4]]
    torch.testing.assert_close(rec.model.score(histories), model.eval().score(histories))
    out = rec.recommend(histories, k=5, exclude_seen=True)
    assert out.items.shape == (2, 5)
    assert not set(out.items[0].tolist()) & {1, 2, 3}
    assert rec.describe([3])[0]["title"] == "item 3"
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["kind"] == "sasrec" and "weights.pt" in meta["files"]


def test_tiger_bundle_round_trip_recommends_real_items_with_their_tag_paths(tmp_path):
    table = sid_table()
    torch.manual_seed(0)
    model = tiger(
        table.full_codes(),
        table.full_codebook_sizes(),
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_model=16,
        num_heads=2,
        head_dim=8,
        ffn_dim=32,
        dropout=0.1,
        num_user_tokens=10,
        max_history=4,
        hierarchy_aware=True,
        tag_text=torch.randn(sum(table.full_codebook_sizes()), 5),
    )
    folder = save_bundle(
        tmp_path / "b", "tiger", model.cfg.to_dict(), model.state_dict(), items_table(), table
    )
    assert {"sids.parquet", "trie.pt", "items.parquet"} <= {p.name for p in folder.iterdir()}
    rec = load_bundle(folder)
    histories = [[1, 2, 3, 4, 5], [7], [0, 0]]
    out = rec.recommend(histories, k=10, users=[3, -1, 4])
    assert out.items.shape == (3, 10) and int(out.items.min()) >= 0 and int(out.items.max()) < N
    assert bool((out.scores[:, :-1] >= out.scores[:, 1:]).all())
    unseen = rec.recommend(histories, k=10, exclude_seen=True)
    for row, h in enumerate(histories):
        assert not set(unseen.items[row].tolist()) & set(h)
    info = rec.describe([1])[0]
    assert info["sid"] == table.full_codes()[1].tolist() and info["tag_path"] == ["Makeup", "Nails"]
    # the weights are the trained ones, bit for bit
    loaded = rec.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_bundle_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="needs the SID table"):
        save_bundle(tmp_path / "x", "tiger", {}, {}, items_table())
    with pytest.raises(FileNotFoundError, match="not a sidrec recommender bundle"):
        load_bundle(tmp_path)
    model = sasrec(
        N, d_model=8, num_layers=1, num_heads=1, ffn_dim=8, dropout=0.0, max_len=5, loss="ce"
    )
    rec = load_bundle(
        save_bundle(
            tmp_path / "s", "sasrec", model.cfg.to_dict(), model.state_dict(), items_table()
        )
    )
    with pytest.raises(ValueError, match=r"histories\[0\]"):
        rec.recommend([[N + 5]])
    meta_path = tmp_path / "s" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    assert meta["version"] == 2
    meta_path.write_text(json.dumps({**meta, "version": 1}))  # v1 still loads
    assert load_bundle(tmp_path / "s").num_items == N
    meta_path.write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(ValueError, match=r"s: bundle format .* v3, this sidrec reads .* v1, v2"):
        load_bundle(tmp_path / "s")
    # A field this sidrec's config lacks (a bundle from another version) is named.
    extra = {**meta, "model_config": {**meta["model_config"], "id_loss_weight": 0.0}}
    meta_path.write_text(json.dumps(extra))
    with pytest.raises(
        ValueError,
        match=r"bundle.json: model_config: sasrec has no field\(s\) \['id_loss_weight'\]",
    ):
        load_bundle(tmp_path / "s")


def test_bundle_carries_popularity_for_the_cold_start_answer(tmp_path):
    model = sasrec(
        N, d_model=8, num_layers=1, num_heads=1, ffn_dim=8, dropout=0.0, max_len=5, loss="ce"
    )
    counts = np.zeros(N, np.int64)
    counts[[7, 3, 11]] = [50, 40, 40]
    folder = save_bundle(
        tmp_path / "p", "sasrec", model.cfg.to_dict(), model.state_dict(), items_table(),
        popularity=counts,
    )  # fmt: skip
    rec = load_bundle(folder)
    assert rec.most_popular(3) == [7, 3, 11]  # ties broken by the lower id
    assert rec.most_popular(2, exclude=[7]) == [3, 11]
    with pytest.raises(ValueError, match="one count per item"):
        save_bundle(
            tmp_path / "q", "sasrec", model.cfg.to_dict(), model.state_dict(), items_table(),
            popularity=counts[:5],
        )  # fmt: skip


# exclude_seen without a [b x N] mask per request, with the dense mask's answers
# (docs/SCALE.md, issue 18).
def dense_seen(histories, num_items):
    """The reference: the [b x N] mask serving built per request before."""
    mask = torch.zeros(len(histories), num_items, dtype=torch.bool)
    for row, h in enumerate(histories):
        if len(h):
            mask[row, torch.as_tensor(np.asarray(h, dtype=np.int64))] = True
    return mask


def random_histories(rng, b, n):
    # empty rows, repeated items, numpy rows: what requests send
    rows = [rng.integers(0, n, size=rng.integers(0, 8)).tolist() for _ in range(b)]
    rows[0] = []
    rows[1] = [3, 3, 3]
    rows[2] = np.asarray(rows[2], dtype=np.int32)
    return rows


def test_sparse_seen_equals_the_dense_mask_on_random_requests():
    rng = np.random.default_rng(0)
    for _ in range(20):
        histories = random_histories(rng, 6, N)
        dense = dense_seen(histories, N)
        scores = torch.randn(6, N)
        want = scores.masked_fill(dense, float("-inf"))
        assert torch.equal(_mask_seen_(scores.clone(), histories), want)
        # beam candidates: any items, -1 padding included
        cand = torch.as_tensor(rng.integers(-1, N, size=(6, 10)))
        cand_scores = torch.randn(6, 10)
        items, kept = drop_flagged(cand, _seen_among(histories, cand), cand_scores)
        ref_items, ref_kept = drop_seen(cand, dense, cand_scores)
        assert torch.equal(items, ref_items) and torch.equal(kept, ref_kept)
    assert _seen_among([[], []], torch.full((2, 3), -1)).sum() == 0


def test_bundles_exclude_seen_as_the_dense_mask_did(tmp_path):
    torch.manual_seed(0)
    histories = [[1, 2, 3, 4, 5], [7], [], [0, 0]]
    dense = dense_seen(histories, N)
    model = sasrec(
        N, d_model=8, num_layers=1, num_heads=1, ffn_dim=8, dropout=0.0, max_len=5, loss="ce"
    )
    rec = load_bundle(
        save_bundle(
            tmp_path / "s", "sasrec", model.cfg.to_dict(), model.state_dict(), items_table()
        )
    )
    got = rec.recommend(histories, k=N - 6, exclude_seen=True)
    ref = rec.model.score(histories).masked_fill(dense, float("-inf")).topk(N - 6, dim=1)
    assert torch.equal(got.items, ref.indices) and torch.equal(got.scores, ref.values)

    table = sid_table()
    model = tiger(
        table.full_codes(), table.full_codebook_sizes(), num_encoder_layers=1,
        num_decoder_layers=1, d_model=16, num_heads=2, head_dim=8, ffn_dim=32, dropout=0.0,
        num_user_tokens=10, max_history=4, hierarchy_aware=False,
    )  # fmt: skip
    rec = load_bundle(
        save_bundle(
            tmp_path / "t", "tiger", model.cfg.to_dict(), model.state_dict(), items_table(), table
        )
    )
    got = rec.recommend(histories, k=8, exclude_seen=True, beam_width=12)
    every = rec.recommend(histories, k=12, exclude_seen=False, beam_width=12)
    ref_items, ref_scores = drop_seen(every.items, dense, every.scores)
    assert torch.equal(got.items, ref_items[:, :8]) and torch.equal(got.scores, ref_scores[:, :8])
