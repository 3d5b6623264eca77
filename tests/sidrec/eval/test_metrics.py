"""sidrec.eval.metrics: vectorized ranking vs the slow reference, hand cases, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from sidrec.eval import (
    RankingEvaluator,
    draw_negatives,
    grouped_metrics,
    head_items,
    history_mask,
    metrics_from_ranks,
    ranks_from_topk,
    sampled_prefix,
    sampled_target_ranks,
    target_ranks,
)
from sidrec.eval import _reference as ref

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
INF = math.inf
KS = (1, 2, 5, 10)
fast = settings(deadline=None, max_examples=60)

# ---------------------------------------------------------------------------
# strategies: tiny catalogs whose scores come from a tiny set, so ties abound
# ---------------------------------------------------------------------------


@st.composite
def batches(draw, max_b=5, max_n=12):
    b = draw(st.integers(1, max_b))
    n = draw(st.integers(1, max_n))
    values = st.sampled_from([-INF, -1.0, 0.0, 0.5, 1.0, INF])
    scores = torch.tensor(draw(st.lists(values, min_size=b * n, max_size=b * n))).view(b, n)
    targets = torch.tensor(draw(st.lists(st.integers(0, n - 1), min_size=b, max_size=b)))
    exclude = torch.tensor(draw(st.lists(st.booleans(), min_size=b * n, max_size=b * n))).view(b, n)
    return scores, targets, exclude


@st.composite
def rank_lists(draw, max_rank=25):
    return torch.tensor(draw(st.lists(st.integers(0, max_rank), min_size=1, max_size=30)))


# ---------------------------------------------------------------------------
# target_ranks
# ---------------------------------------------------------------------------


@fast
@given(batches())
def test_target_ranks_matches_reference(batch):
    scores, targets, exclude = batch
    assert_close(target_ranks(scores, targets), ref.target_ranks(scores, targets))
    assert_close(target_ranks(scores, targets, exclude), ref.target_ranks(scores, targets, exclude))


def test_target_ranks_known_matrix_with_ties():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]] * 5)
    # stable order by (-score, id): 1, 2, 4, 0, 3
    assert target_ranks(scores, torch.tensor([1, 2, 4, 0, 3])).tolist() == [0, 1, 2, 3, 4]


def test_constant_scores_rank_by_item_id():
    scores = torch.zeros(3, 7)
    assert target_ranks(scores, torch.tensor([0, 4, 6])).tolist() == [0, 4, 6]


def test_exclude_seen_removes_history_and_target_in_history_is_not_found():
    scores = torch.tensor([[0.9, 0.8, 0.5, 0.1]] * 3)
    targets = torch.tensor([2, 2, 1])
    exclude = history_mask([[], [1], [1, 3]], num_items=4)
    assert target_ranks(scores, targets).tolist() == [2, 2, 1]
    # row 1: item 1 removed, target moves up; row 2: the target is in history -> rank N
    assert target_ranks(scores, targets, exclude).tolist() == [2, 1, 4]
    # rank N = 4 is below the cutoff 10 but means "not found": a miss
    ranks = target_ranks(scores, targets, exclude)
    assert metrics_from_ranks(ranks, ks=(10,), not_found=4)["recall@10"] == pytest.approx(2 / 3)
    evaluator = RankingEvaluator(4, ks=(10,))  # not_found defaults to N
    evaluator.add(ranks, targets)
    assert evaluator.compute()["recall@10"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("device", DEVICES)
def test_target_ranks_on_device(device):
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (8, 50), generator=g).float()
    targets = torch.randint(0, 50, (8,), generator=g)
    exclude = torch.rand(8, 50, generator=g) < 0.3
    got = target_ranks(scores.to(device), targets.to(device), exclude.to(device))
    assert got.device.type == device
    assert_close(got.cpu(), ref.target_ranks(scores, targets, exclude))


def test_nan_scores_raise():
    scores = torch.tensor([[0.1, float("nan"), 0.3]])
    with pytest.raises(ValueError, match="scores: contains NaN"):
        target_ranks(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN"):
        sampled_target_ranks(
            scores, torch.tensor([0]), num_negatives=1, negatives=torch.tensor([[2]])
        )


@pytest.mark.parametrize(
    "scores, targets, exclude, argument",
    [
        (torch.zeros(3, 5), torch.tensor([0, 1]), None, "targets"),
        (torch.zeros(3, 5), torch.tensor([[0], [1], [2]]), None, "targets"),
        (torch.zeros(5), torch.tensor([0]), None, "scores"),
        (torch.zeros(2, 5), torch.tensor([0, 1]), torch.zeros(2, 4, dtype=torch.bool), "exclude"),
        (torch.zeros(2, 5), torch.tensor([0, 1]), torch.zeros(2, 5), "exclude"),
        (torch.zeros(2, 5), torch.tensor([0, 5]), None, "targets"),
        (torch.zeros(2, 5), torch.tensor([0.0, 1.0]), None, "targets"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(scores, targets, exclude, argument):
    with pytest.raises(ValueError, match=f"^{argument}:"):
        target_ranks(scores, targets, exclude)


# ---------------------------------------------------------------------------
# ranks_from_topk and history_mask
# ---------------------------------------------------------------------------


@fast
@given(st.data())
def test_ranks_from_topk_matches_reference(data):
    b, k = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 8))
    topk = torch.tensor(
        data.draw(st.lists(st.integers(-1, 6), min_size=b * k, max_size=b * k))
    ).view(b, k)
    targets = torch.tensor(data.draw(st.lists(st.integers(0, 6), min_size=b, max_size=b)))
    assert_close(ranks_from_topk(topk, targets), ref.ranks_from_topk(topk, targets))


def test_ranks_from_topk_by_hand():
    topk = torch.tensor([[3, 1, -1], [3, 1, -1], [2, 2, 0]])
    assert ranks_from_topk(topk, torch.tensor([1, 7, 2])).tolist() == [1, 3, 0]
    with pytest.raises(ValueError, match="^targets:"):
        ranks_from_topk(topk, torch.tensor([-1, 0, 0]))  # -1 is padding, never a target
    with pytest.raises(ValueError, match="^targets:"):
        ranks_from_topk(topk, torch.tensor([1, 2]))


@fast
@given(st.data())
def test_history_mask_list_and_padded_tensor_agree_with_reference(data):
    n = data.draw(st.integers(1, 10))
    histories = data.draw(
        st.lists(st.lists(st.integers(0, n - 1), max_size=6), min_size=1, max_size=5)
    )
    width = max(len(h) for h in histories)
    padded = torch.tensor([h + [-1] * (width - len(h)) for h in histories], dtype=torch.long)
    padded = padded.view(len(histories), width)
    expected = ref.history_mask(histories, n)
    assert torch.equal(history_mask(histories, n), expected)
    assert torch.equal(history_mask(padded, n), expected)
    assert torch.equal(history_mask([np.array(h, dtype=np.int32) for h in histories], n), expected)


def test_history_mask_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="^histories:"):
        history_mask([[0, 4]], num_items=4)


# ---------------------------------------------------------------------------
# metrics_from_ranks
# ---------------------------------------------------------------------------


def test_metrics_by_hand():
    m = metrics_from_ranks(torch.tensor([0]), ks=(1, 5))
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "ndcg@1": 1.0, "ndcg@5": 1.0, "count": 1}
    m = metrics_from_ranks(torch.tensor([2]), ks=(1, 3, 5))
    assert (m["recall@1"], m["recall@3"], m["ndcg@1"]) == (0.0, 1.0, 0.0)
    assert m["ndcg@5"] == pytest.approx(0.5)  # 1 / log2(4)
    m = metrics_from_ranks(torch.tensor([0, 2, 7, 100]), ks=(5,))
    assert m["recall@5"] == 0.5
    assert m["ndcg@5"] == pytest.approx((1.0 + 0.5) / 4)
    assert m["count"] == 4


@fast
@given(rank_lists(), st.one_of(st.none(), st.integers(1, 12)))
def test_metrics_match_reference(ranks, not_found):
    if not_found is not None:
        ranks = ranks.clamp(max=not_found)
    got = metrics_from_ranks(ranks, KS, prefix="p/", not_found=not_found)
    expected = ref.metrics_from_ranks(ranks, KS, prefix="p/", not_found=not_found)
    assert got.keys() == expected.keys()
    assert_close(
        torch.tensor(list(got.values()), dtype=torch.float64),
        torch.tensor(list(expected.values()), dtype=torch.float64),
    )


def test_metrics_prefix_empty_and_bad_ks():
    assert set(metrics_from_ranks(torch.tensor([1]), ks=(10,), prefix=sampled_prefix(100))) == {
        "sampled100/recall@10",
        "sampled100/ndcg@10",
        "sampled100/count",
    }
    empty = metrics_from_ranks(torch.zeros(0, dtype=torch.long), ks=(5,))
    assert empty["count"] == 0 and math.isnan(empty["recall@5"])
    with pytest.raises(ValueError, match="^ks:"):
        metrics_from_ranks(torch.tensor([1]), ks=(0,))
    with pytest.raises(ValueError, match="^ranks:"):
        metrics_from_ranks(torch.tensor([-1]))
    with pytest.raises(ValueError, match="^ranks:"):
        metrics_from_ranks(torch.tensor([[1]]))


def test_not_found_is_a_miss_above_its_rank():
    topk = torch.tensor([[4, 5, 6], [4, 5, 6]])
    ranks = ranks_from_topk(topk, torch.tensor([9, 6]))  # [3 = not found, 2]
    m = metrics_from_ranks(ranks, ks=(1, 3, 5), not_found=3)
    assert (m["recall@1"], m["recall@3"], m["recall@5"]) == (0.0, 0.5, 0.5)
    assert metrics_from_ranks(ranks, ks=(5,))["recall@5"] == 1.0  # what forgetting it costs
    with pytest.raises(ValueError, match=r"^ranks: must be <= 2 \(not_found\)"):
        metrics_from_ranks(ranks, ks=(5,), not_found=2)


# ---------------------------------------------------------------------------
# head / tail
# ---------------------------------------------------------------------------

COUNTS = torch.tensor([5, 0, 3, 3, 1, 7, 0, 2, 3, 1])


def test_head_items_by_hand():
    assert head_items(COUNTS).nonzero().flatten().tolist() == [0, 5]  # ceil(0.2 * 10) = 2
    # ceil(0.3 * 10) = 3: items 2, 3, 8 tie on 3 interactions; the lowest id wins
    assert head_items(COUNTS, 0.3).nonzero().flatten().tolist() == [0, 2, 5]
    # ceil(0.25 * 10) = 3 as well: rounding is up
    assert head_items(COUNTS, 0.25).sum() == 3
    # items never seen in training are tail even when the head has room
    assert head_items(torch.tensor([0, 0, 1]), 1.0).tolist() == [False, False, True]
    # 0.2 * 15 is 3.0000000000000004 in floating point: still 3 head items
    assert head_items(torch.arange(15), 0.2).sum() == 3


@fast
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=30),
    st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 1.0]),
)
def test_head_items_match_reference(counts, fraction):
    counts = torch.tensor(counts)
    assert torch.equal(head_items(counts, fraction), ref.head_items(counts, fraction))


def test_grouped_metrics_by_hand():
    head = head_items(COUNTS)  # items 0 and 5
    m = grouped_metrics(torch.tensor([0, 3, 10]), torch.tensor([5, 2, 1]), head, ks=(1, 5))
    assert (m["count"], m["head/count"], m["tail/count"]) == (3, 1, 2)
    assert m["head/recall@1"] == 1.0 and m["head/ndcg@5"] == 1.0
    assert m["tail/recall@5"] == 0.5 and m["tail/ndcg@5"] == pytest.approx(0.5 * 1 / math.log2(5))
    assert m["recall@5"] == pytest.approx(2 / 3)
    empty_head = grouped_metrics(torch.tensor([1]), torch.tensor([1]), head, ks=(5,))
    assert empty_head["head/count"] == 0 and math.isnan(empty_head["head/recall@5"])


# ---------------------------------------------------------------------------
# streaming evaluator
# ---------------------------------------------------------------------------


@fast
@given(
    st.lists(st.tuples(st.integers(0, 10), st.integers(0, 9)), min_size=1, max_size=40),
    st.lists(st.integers(0, 40), max_size=4),
)
def test_evaluator_streamed_equals_single_shot(pairs, cuts):
    ranks = torch.tensor([r for r, _ in pairs])
    targets = torch.tensor([t for _, t in pairs])
    head = head_items(COUNTS)
    streamed = RankingEvaluator(10, KS, head_mask=head, prefix="exclude_seen/")
    bounds = [0, *sorted(min(c, len(pairs)) for c in cuts), len(pairs)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        streamed.add(ranks[lo:hi], targets[lo:hi])
    single = grouped_metrics(ranks, targets, head, KS, prefix="exclude_seen/")
    got = streamed.compute()
    assert got.keys() == single.keys()
    for key in single:
        assert_close(got[key], single[key], equal_nan=True)


def test_evaluator_merge_and_reset():
    ranks, targets = torch.tensor([0, 4, 9, 2]), torch.tensor([5, 0, 1, 3])
    a, b = RankingEvaluator(10, (5,)), RankingEvaluator(10, (5,))
    a.add(ranks[:2], targets[:2])
    b.add(ranks[2:], targets[2:])
    a.merge(b)
    assert a.compute() == metrics_from_ranks(ranks, (5,))
    a.reset()
    assert a.compute()["count"] == 0
    with pytest.raises(ValueError, match="^ranks:"):
        a.add(torch.tensor([11]), torch.tensor([0]))  # rank N = 10 is the largest possible
    with pytest.raises(ValueError, match="^targets:"):
        a.add(torch.tensor([1, 2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="^head_mask:"):
        RankingEvaluator(10, head_mask=torch.zeros(9, dtype=torch.bool))
    with pytest.raises(ValueError, match="^other:"):
        a.merge(RankingEvaluator(10, (5,), not_found=101))


# ---------------------------------------------------------------------------
# sampled protocol
# ---------------------------------------------------------------------------


@fast
@given(batches(max_n=14), st.integers(0, 2**31 - 1))
def test_sampled_ranks_match_reference_on_the_same_negatives(batch, seed):
    scores, targets, exclude = batch
    exclude[torch.arange(len(targets)), targets] &= (
        torch.rand(len(targets)) < 0.5
    )  # some targets seen
    free = (~exclude).sum(1) - (~exclude[torch.arange(len(targets)), targets]).long()
    n_neg = int(free.min())
    if n_neg == 0:
        return
    g = torch.Generator().manual_seed(seed)
    negatives = draw_negatives(targets, scores.shape[1], n_neg, g, exclude)
    got = sampled_target_ranks(scores, targets, n_neg, exclude=exclude, negatives=negatives)
    assert_close(got, ref.sampled_target_ranks(scores, targets, negatives, exclude))


def test_draw_negatives_valid_reproducible_and_uniform():
    targets = torch.zeros(20000, dtype=torch.long)
    exclude = torch.zeros(20000, 12, dtype=torch.bool)
    exclude[:, 11] = True
    negs = draw_negatives(targets, 12, 3, torch.Generator().manual_seed(1), exclude)
    assert negs.shape == (20000, 3)
    assert ((negs >= 1) & (negs <= 10)).all()  # never the target 0, never the excluded 11
    assert (negs.sort(1).values.diff(dim=1) > 0).all()  # without replacement
    freq = torch.bincount(negs.flatten(), minlength=12)[1:11].double() / 20000
    assert_close(freq, torch.full((10,), 0.3, dtype=torch.float64), atol=0.015, rtol=0)
    again = draw_negatives(targets, 12, 3, torch.Generator().manual_seed(1), exclude)
    assert torch.equal(negs, again)


def test_sampled_target_ranks_draws_with_the_generator_and_ranks_by_hand():
    scores = torch.tensor([[0.0, 5.0, 1.0, 1.0, 9.0, 2.0]])
    targets = torch.tensor([2])
    drawn = sampled_target_ranks(scores, targets, 5, torch.Generator().manual_seed(3))
    # 5 negatives out of 5 candidates: the full ranking, 4, 1, 5 ahead; 3 ties but has a larger id
    assert drawn.tolist() == [3] == target_ranks(scores, targets).tolist()
    negatives = torch.tensor([[0, 3]])
    assert sampled_target_ranks(scores, targets, 2, negatives=negatives).tolist() == [0]
    exclude = torch.tensor([[False, False, True, False, False, False]])
    # an excluded target is not found: one past the 3 ranked candidates
    assert sampled_target_ranks(
        scores, targets, 2, exclude=exclude, negatives=negatives
    ).tolist() == [3]


def test_sampled_errors():
    scores, targets = torch.zeros(2, 6), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="^num_negatives:.*row 0"):
        sampled_target_ranks(scores, targets, 6)
    with pytest.raises(ValueError, match="^negatives:.*own target"):
        sampled_target_ranks(scores, targets, 2, negatives=torch.tensor([[1, 2], [1, 2]]))
    with pytest.raises(ValueError, match="^negatives:"):
        sampled_target_ranks(scores, targets, 3, negatives=torch.tensor([[1, 2], [0, 2]]))
