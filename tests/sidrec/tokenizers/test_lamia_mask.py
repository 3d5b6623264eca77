"""LAMIA's hierarchical attention mask (§4.2.1): checked cell by cell, and with
gradients through a real (tiny, random) decoder-only LM that no task token
can see a content or LaP token, and that content never sees the palette."""

from __future__ import annotations

import pytest
import torch

from sidrec.tokenizers.lamia._mask import (
    CONTENT,
    PALETTE,
    PLACEHOLDER,
    TASK,
    block_mask,
    packed_positions,
)


def _helpers():
    # tests/ is not a package (pytest --import-mode=importlib): load the helper by path.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("lamia_helpers.py")
    spec = importlib.util.spec_from_file_location("lamia_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BLOCKS = [(CONTENT, 3), (PALETTE, 2), (PLACEHOLDER, 2), (TASK, 3)]


def test_mask_cell_by_cell():
    # Rows = queries, columns = keys, in the order C C C P P D D T T T.
    expected = [
        "1000000000",  # C0: causal inside content
        "1100000000",
        "1110000000",
        "1111000000",  # P0 sees all content, itself
        "1111100000",  # P1 sees content and P0 (causal)
        "0000010000",  # D0 sees only itself: no content, no LaP
        "0000011000",
        "0000011100",  # T0 (task token) sees every placeholder, itself
        "0000011110",
        "0000011111",
    ]
    want = torch.tensor([[c == "1" for c in row] for row in expected])
    got = block_mask(BLOCKS)[0]
    assert torch.equal(got, want), f"\n{got.int()}"


def test_padding_keys_closed_and_rows_never_empty():
    valid = torch.tensor([[True, True, False, True, True, True, True, True, True, False]])
    mask = block_mask(BLOCKS, valid)[0]
    assert not mask[3:5, 2].any(), "a padded content token is attended"
    assert not mask[:, 9].any() or mask[9, 9], "padding key open to others"
    assert mask[9, 9] and mask[2, 2], "a padding query must keep itself, or softmax is empty"
    assert mask.any(1).all()


def test_bidirectional_block_and_custom_cross():
    mask = block_mask([(CONTENT, 3), (PALETTE, 2)], bidirectional=(CONTENT,))[0]
    assert mask[:3, :3].all(), "the encoder's content block is bidirectional"
    assert not mask[:3, 3:].any(), "content never reads the palette"
    assert mask[3:, :3].all()


def test_packed_positions_ignore_padding():
    valid = torch.tensor([[True, True, False, False, True], [True, True, True, True, True]])
    pos = packed_positions(valid, start=torch.tensor([10, 0]))
    assert pos.tolist() == [[10, 11, 11, 11, 12], [0, 1, 2, 3, 4]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _helpers().tiny_decoder_palette(num_palette=2, num_tasks=1).eval()


def _grad_rows(model, query_rows: slice) -> torch.Tensor:
    """|d out[query_rows] / d input| summed per input position, one full block row."""
    lengths = [n for _, n in BLOCKS]
    s = sum(lengths)
    torch.manual_seed(1)
    x = torch.randn(1, s, model.palette_dim, requires_grad=True)
    out = model._run(x, block_mask(BLOCKS), packed_positions(torch.ones(1, s, dtype=torch.bool)))
    probe = torch.randn_like(out[0, query_rows])  # a random readout: LayerNorm sums are constant
    (out[0, query_rows] * probe).sum().backward()
    return x.grad[0].abs().sum(-1)


def test_no_task_token_sees_content_or_lap(model):
    grad = _grad_rows(model, slice(7, 10))
    assert torch.count_nonzero(grad[:5]) == 0, f"task block depends on content/LaP: {grad}"
    assert (grad[5:] > 0).all(), "task block must read the placeholders and itself"


def test_palette_reads_content_and_never_the_later_blocks(model):
    grad = _grad_rows(model, slice(3, 5))
    assert (grad[:5] > 0).all()
    assert torch.count_nonzero(grad[5:]) == 0


def test_content_never_sees_the_palette(model):
    grad = _grad_rows(model, slice(0, 3))
    assert (grad[:3] > 0).all() and torch.count_nonzero(grad[3:]) == 0
