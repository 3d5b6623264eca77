"""Explanations: SID prefix labels (computed at bundle time, or at load for older
bundles), the history items sharing a recommended item's longest prefix, the
category fallback of SID-less models, and the title search."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sidrec.data.sid_labels import compute_prefix_labels, read_prefix_labels, write_prefix_labels
from sidrec.models.bundle import LABELS_FILE, load_bundle
from sidrec.serving import (
    Limits,
    RecommendRequest,
    RecommendResponse,
    check_request,
    item_info,
    load_serving_model,
    recommend_batch,
    search_items,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_labels_read_each_prefix_through_the_items_under_it(tmp_path):
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0]])
    titles = ["Red nail polish", "Red nail lacquer", "Blue nail polish", "Hair dryer turbo",
              "Hair brush", "Hair spray"]  # fmt: skip
    categories = [["Makeup", "Nails"], ["Makeup", "Nails"], ["Makeup", "Lips"], ["Hair"],
                  ["Hair", "Brushes"], ["Hair"]]  # fmt: skip
    labels = compute_prefix_labels(codes, titles, categories)
    [top, mid, leaf] = labels.path([0, 0, 1])
    # share under the prefix x log(N / catalog items with the word); ties: alphabetical
    assert (top.category, top.items, top.terms) == ("Makeup", 3, ("polish", "red", "nail"))
    assert (mid.category, mid.items, mid.terms) == ("Nails", 2, ("red", "lacquer", "nail"))
    assert leaf.items == 1 and leaf.terms[0] == "lacquer" and leaf.text.startswith("Nails: ")
    assert labels.path([1])[0].terms == ("hair", "brush", "dryer")
    # an item with a shorter path counts with its deepest step
    assert labels.path([1, 0, 0])[2].category == "Hair"
    # tag text from the SID table wins over the catalog (HiD-VAE's tags)
    tags = [["Beauty", "", ""]] * 6
    assert compute_prefix_labels(codes, titles, categories, tags).path([0])[0].category == "Beauty"
    assert labels.path([7, 7])[0].items == 0  # not in the catalog: an empty label
    # a disambiguation level after the learned ones means nothing
    with_suffix = np.concatenate([codes, np.zeros((6, 1), np.int64)], axis=1)
    suffixed = compute_prefix_labels(with_suffix, titles, categories, learned_levels=3)
    assert suffixed.path([0, 0, 1, 0])[3].text == "(disambiguation)"
    assert suffixed.path([0, 0, 1, 0])[:3] == labels.path([0, 0, 1])
    write_prefix_labels(tmp_path / "labels.parquet", labels)
    assert read_prefix_labels(tmp_path / "labels.parquet").by_prefix == labels.by_prefix
    assert [p.name for p in tmp_path.iterdir()] == ["labels.parquet"]  # no temp file left


def test_bundles_carry_labels_and_older_bundles_get_them_at_load(beauty_bundles, tmp_path):
    folder = beauty_bundles["tiger"]
    assert (folder / LABELS_FILE).is_file()
    stored = load_bundle(folder).sid_labels
    old = shutil.copytree(folder, tmp_path / "old")
    (old / LABELS_FILE).unlink()  # as a bundle written before labels existed
    assert load_bundle(old).sid_labels.by_prefix == stored.by_prefix
    assert load_bundle(beauty_bundles["sasrec"]).sid_labels is None


@pytest.fixture(scope="module", params=["tiger", "sasrec"])
def model(request, beauty_bundles):
    return load_serving_model(str(beauty_bundles[request.param]))


def test_explanations_name_the_history_items_sharing_the_longest_prefix(model):
    history = [model.source_ids[i] for i in (5, 17, 300, 5)]
    query = check_request(model, RecommendRequest(history=history, k=10), Limits())
    [answer] = recommend_batch(model, [query], beam_width=20)
    RecommendResponse.model_validate(answer)  # the strict wire schema
    table = model.sids if model.sids is not None else model.category_codes
    dense = [5, 17, 300]
    for row in answer["items"]:
        item, why = model.index[row["item_id"]], row["explanation"]
        assert why["basis"] == ("sid" if model.sids is not None else "category")
        shared = []
        for h in dense:
            a, b = table[item], table[h]
            n = 0
            while n < len(a) and a[n] == b[n] and a[n] >= 0:
                n += 1
            shared.append(n)
        assert why["shared_prefix"] == max(shared)
        expected = [h for h, n in zip(dense, shared, strict=True) if n == max(shared) > 0]
        # most recent first: 5 was seen last
        order = sorted(
            expected,
            key=lambda h: -max(i for i, x in enumerate(history) if x == model.source_ids[h]),
        )
        assert [m["item_id"] for m in why["history"]] == [model.source_ids[h] for h in order]
        if model.sids is not None:
            labels = why["sid_labels"]
            assert [lab["code"] for lab in labels] == row["sid"]
            assert labels[0]["items"] >= labels[-1]["items"] >= 1 and labels[0]["label"]
            assert item_info(model, row["item_id"]).model_dump()["sid_labels"] == labels
        else:
            assert why["sid_labels"] == [] and item_info(model, row["item_id"]).sid_labels == []


def test_cold_start_items_are_explained_without_history(model):
    query = check_request(model, RecommendRequest(history=[], k=3), Limits())
    [answer] = recommend_batch(model, [query], beam_width=20)
    assert all(
        r["explanation"]["shared_prefix"] == 0 and r["explanation"]["history"] == []
        for r in answer["items"]
    )


def test_title_search_needs_every_word_and_ranks_by_popularity(model):
    found = search_items(model, "NAIL polish", limit=7)
    assert found.total > 7 and len(found.items) == 7
    for hit in found.items:
        assert "nail" in hit.title.lower() and "polish" in hit.title.lower()
    pops = [hit.popularity for hit in found.items]
    assert pops == sorted(pops, reverse=True)
    assert search_items(model, "zzqx-no-such-word", limit=5).total == 0
