"""The endpoint's plain functions on real Beauty bundles: request checks, batched
answers equal to one-by-one answers, exclude_seen, cold start, truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.serving import (
    Limits,
    RecommendRequest,
    RequestError,
    check_request,
    item_info,
    load_serving_model,
    recommend_batch,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["sasrec", "tiger", "h2rec", "lmrec"])
def model(request, beauty_bundles):
    return load_serving_model(str(beauty_bundles[request.param]))


def ids(model, dense):
    return [model.source_ids[i] for i in dense]


DEFAULT_LIMITS = Limits()


def ask(model, history, k=10, exclude_seen=False, limits=DEFAULT_LIMITS, beam_width=20):
    req = RecommendRequest(history=history, k=k, exclude_seen=exclude_seen)
    return recommend_batch(model, [check_request(model, req, limits)], beam_width)[0]


def test_answers_name_real_catalog_items_with_titles_and_paths(model):
    answer = ask(model, ids(model, [5, 17, 300]), k=7)
    assert len(answer["items"]) == 7 and not answer["cold_start"]
    assert answer["model"]["name"] == model.recommender.kind and answer["model"]["version"] is None
    for row in answer["items"]:
        item = model.index[row["item_id"]]
        assert row["title"] == model.titles[item] and row["path"] == model.paths[item]
        assert (row["sid"] is None) == (model.sids is None)
    scores = [row["score"] for row in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    if model.generative:  # every decoded SID is a real item's SID
        for row in answer["items"]:
            assert row["sid"] == model.sids[model.index[row["item_id"]]].tolist()


def test_a_batch_answers_exactly_what_each_request_gets_alone(model):
    rng = np.random.default_rng(0)
    histories = [ids(model, rng.integers(0, 12101, rng.integers(1, 30)).tolist()) for _ in range(9)]
    requests = [
        RecommendRequest(history=h, k=int(k), exclude_seen=bool(k % 2))
        for h, k in zip(histories, rng.integers(1, 21, 9), strict=True)
    ]
    queries = [check_request(model, r, Limits()) for r in requests]
    together = recommend_batch(model, queries, beam_width=20)
    alone = [recommend_batch(model, [q], beam_width=20)[0] for q in queries]
    for a, b in zip(together, alone, strict=True):
        assert [r["item_id"] for r in a["items"]] == [r["item_id"] for r in b["items"]]
        np.testing.assert_allclose(
            [r["score"] for r in a["items"]], [r["score"] for r in b["items"]], rtol=1e-4, atol=1e-4
        )


def test_exclude_seen_drops_history_items(model):
    plain = ask(model, ids(model, [1, 2, 3]), k=20)
    seen = {plain["items"][0]["item_id"], plain["items"][3]["item_id"]}
    history = [*ids(model, [1, 2, 3]), *seen]
    answer = ask(model, history, k=10, exclude_seen=True)
    assert not seen & {r["item_id"] for r in answer["items"]}
    assert not set(history) & {r["item_id"] for r in answer["items"]}


def test_empty_history_is_the_flagged_most_popular_answer(model, beauty_root):
    from sidrec.data.catalog import train_item_counts

    answer = ask(model, [], k=5)
    assert answer["cold_start"] and answer["history_used"] == 0
    counts = train_item_counts(beauty_root, 12101)
    got = [model.index[r["item_id"]] for r in answer["items"]]
    assert [counts[i] for i in got] == sorted(counts, reverse=True)[:5]
    assert [r["score"] for r in answer["items"]] == [float(counts[i]) for i in got]


def test_long_histories_are_cut_to_the_model_window_and_limits_give_422(model):
    history = ids(model, list(range(100)))
    answer = ask(model, history, k=3)
    assert answer["history_used"] == model.context < 100
    # only the window matters: the same answer as sending the window alone
    window = ask(model, history[-model.context :], k=3)
    assert [r["item_id"] for r in answer["items"]] == [r["item_id"] for r in window["items"]]
    with pytest.raises(RequestError, match="max_history=50") as err:
        ask(model, history, limits=Limits(max_history=50))
    assert err.value.status == 422
    with pytest.raises(RequestError, match="max_k=100"):
        ask(model, history[:3], k=101)


def test_unknown_ids_are_all_named(model):
    with pytest.raises(RequestError) as err:
        ask(model, [model.source_ids[0], "NOPE-1", "NOPE-2", "NOPE-1"])
    assert err.value.status == 422
    assert err.value.detail["unknown_item_ids"] == ["NOPE-1", "NOPE-2"]
    with pytest.raises(RequestError) as err:
        item_info(model, "NOPE-3")
    assert err.value.status == 404


def test_item_info_and_request_schema(model):
    info = item_info(model, model.source_ids[42])
    assert info.title == model.titles[42] and info.path == model.paths[42]
    assert info.popularity >= 0
    with pytest.raises(ValueError, match="exclude_seeen"):
        RecommendRequest(history=[], exclude_seeen=True)
    with pytest.raises(ValueError):
        RecommendRequest(history=[], k=0)
