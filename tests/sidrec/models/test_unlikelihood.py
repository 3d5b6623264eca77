"""The seen-item unlikelihood of the SID models: the term and the sampler of read items
(SID-GPT's loss with it is tested in test_sidgpt.py)."""

from __future__ import annotations

import torch

from sidrec.models._unlikelihood import not_again, sample_read_items


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
