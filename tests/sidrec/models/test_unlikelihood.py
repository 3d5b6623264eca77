"""The seen-item unlikelihood of the SID models: the sampler of read items, the term
against SID-GPT's exhaustive log_prob, and the switch in SID-GPT's loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sidrec.decoding import random_sid_table
from sidrec.models._unlikelihood import SEEN_EVERY, not_again, sample_read_items
from sidrec.models.sidgpt import sidgpt

SIZES = [5, 4, 3]


def tiny(seen_penalty=0.0):
    torch.manual_seed(0)
    return sidgpt(
        random_sid_table(40, SIZES, seed=0),
        SIZES,
        d_model=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=32,
        dropout=0.2,
        max_len=8,
        seen_penalty=seen_penalty,
    ).eval()


def test_not_again_is_minus_log_one_minus_p_and_finite_at_one():
    p = torch.tensor([0.0001, 0.3, 0.9])
    torch.testing.assert_close(not_again(p.log()), -torch.log1p(-p))
    assert torch.isfinite(not_again(torch.zeros(1)))


def test_read_items_come_from_the_history_so_far_never_padding_or_the_target():
    inputs = torch.tensor([[-1, -1, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    targets = torch.tensor([[-1, -1, 4, 5, 3, 7], [2, 3, 4, 5, 6, 7]])
    torch.manual_seed(0)
    draws = [sample_read_items(inputs, targets, every=1) for _ in range(50)]
    positions, read = (torch.cat(parts) for parts in zip(*draws, strict=True))
    assert positions.shape == read.shape == (600,)
    seen: dict[tuple[int, int], set[int]] = {}
    for pos, item in zip(positions.tolist(), read.tolist(), strict=True):
        row, t = divmod(pos, 6)
        history = {i for i in inputs[row, : t + 1].tolist() if i >= 0}
        if targets[row, t] < 0 or not history:
            assert item == -1
            continue
        assert item == -1 or (item in history and item != targets[row, t])
        seen.setdefault((row, t), set()).add(item)
    # uniform over the read items: with ~50 draws a position, each one shows up
    assert seen[(1, 5)] == {1, 2, 3, 4, 5, 6}
    assert seen[(0, 4)] == {-1, 4, 5}  # item 3 is position 4's target: none instead


def test_sidgpt_adds_the_mean_unlikelihood_of_the_sampled_items_under_log_prob():
    """loss = the code CE + weight x mean over the sampled positions with a read item of
    -log(1 - p(item | prefix)), p the product of the trie-masked code softmaxes (as
    SID-GPT's exhaustive log_prob); weight 0 = the plain loss."""
    x = torch.randint(40, (3, 7), generator=torch.Generator().manual_seed(1))
    inputs, targets = x[:, :-1], x[:, 1:]
    plain, penalised = tiny(), tiny(seen_penalty=2.0)  # the same weights (seed 0)
    torch.manual_seed(5)
    positions, read = sample_read_items(inputs, targets, SEEN_EVERY)
    torch.manual_seed(5)
    total = penalised(inputs, targets)
    terms = []
    for pos, item in zip(positions.tolist(), read.tolist(), strict=True):
        row, t = divmod(pos, inputs.shape[1])
        if item >= 0:
            log_p = plain.log_prob(inputs[row : row + 1, : t + 1], torch.tensor([[item]]))
            terms.append(not_again(log_p[0, 0]))
    assert terms, "the draw should find read items"
    expected = plain(inputs, targets) + 2.0 * torch.stack(terms).mean()
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    total.backward()
    assert all(p.grad is not None for p in penalised.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="seen_penalty must be >= 0"):
        dataclasses.replace(plain.cfg, seen_penalty=-1.0)


def test_a_padded_batch_draws_no_padding_and_gives_a_finite_loss():
    model = tiny(seen_penalty=1.0).train()
    inputs = torch.tensor([[-1, -1, 3, 4], [5, 6, 7, 8]])
    targets = torch.tensor([[-1, -1, 4, 9], [6, 7, 8, 9]])
    loss = model(inputs, targets, valid=inputs >= 0)
    assert torch.isfinite(loss)
    loss.backward()
