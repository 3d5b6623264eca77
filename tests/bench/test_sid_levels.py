"""bench/sid_levels.py: a SID-GPT bundle's per-level valid NLL / accuracy and the seen
items in its top 10, on the real Beauty valid split; other kinds are refused by name."""

from __future__ import annotations

import math

import pytest
import torch

USERS = 300


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("sid_levels")


def test_levels_add_up_to_the_models_log_prob_of_the_target(bench, bundles, beauty_root):
    from sidrec.models._data import split_rows
    from sidrec.models.bundle import load_bundle
    from sidrec.models.train._common import load_data
    from sidrec.models.train.config import TrainConfig

    result = bench.level_table(bundles["sidgpt"], beauty_root, max_users=USERS)
    net = load_bundle(bundles["sidgpt"]).model.eval()
    assert result["users"] == USERS
    assert [row["level"] for row in result["levels"]] == list(range(net.cfg.num_levels))
    for row in result["levels"]:
        assert 0 <= row["top1"] <= row["top5"] <= 1
        assert row["nll"] >= 0 and 0 <= row["code_entropy"] <= math.log(256) + 1e-6
    # The levels' NLLs sum to the exhaustive -log p(target | history), user by user.
    data = load_data(TrainConfig(root=str(beauty_root), max_users=USERS))
    rows = split_rows(data.valid, net.cfg.max_len)
    total = 0.0
    for i in range(USERS):
        n = int(rows.lengths[i])
        history = torch.as_tensor(rows.history[i : i + 1, -n:])
        target = torch.as_tensor(rows.targets[i : i + 1])[:, None]
        total -= float(net.log_prob(history, target))
    assert sum(row["nll"] for row in result["levels"]) == pytest.approx(total / USERS, rel=1e-4)
    seen = result["seen"]
    assert 0 <= seen["seen_per_top10"] <= 10
    assert 0 <= seen["users_with_a_seen_item"] <= 1
    assert seen["targets_seen_before"] == 0  # Beauty's 5-core log never repeats an item
    assert seen["train_targets_seen_before"] == 0
    prefixes = [row["prefixes"] for row in result["levels"]]
    assert prefixes == sorted(prefixes) and prefixes[-1] == net.cfg.num_items  # full SIDs: unique


def test_a_bundle_that_is_not_sidgpt_is_refused_naming_it(bench, bundles, beauty_root):
    with pytest.raises(ValueError, match="a tiger bundle; the per-level table reads SID-GPT"):
        bench.level_table(bundles["tiger"], beauty_root, max_users=USERS)
