"""Slow, obvious implementations of `sidrec.decoding`, for property tests only.

A plain Python dict trie, one decoder call per prefix, Python lists and
`sorted()`: each function can be checked by eye and shares no code with the
vectorized search. Never call these from a job.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sidrec.decoding.beam import BeamResult, DecoderStep


def dict_trie(codes: Tensor) -> dict:
    """Nested dicts code -> child; at the last level code -> item id."""
    root: dict = {}
    for item, row in enumerate(codes.tolist()):
        node = root
        for code in row[:-1]:
            node = node.setdefault(code, {})
        node[row[-1]] = item
    return root


def allowed_mask(codes: Tensor, prefixes: Tensor, k: int) -> Tensor:
    """[M x k] bool: the codes that follow each prefix in prefixes: [M x l] in the table."""
    root = dict_trie(codes)
    mask = torch.zeros(prefixes.shape[0], k, dtype=torch.bool)
    for i, prefix in enumerate(prefixes.tolist()):
        node = root
        for code in prefix:
            node = node.get(code, {})
        for code in node:
            mask[i, code] = True
    return mask


def _row_state(decoder: DecoderStep, state: Any, row: int) -> Any:
    return decoder.reorder(state, torch.tensor([row]))


def _log_probs(decoder: DecoderStep, prefix: list[int], state: Any, allowed, renormalize: bool):
    """log p(next code | prefix) as a list, and the state after the step."""
    logits, state = decoder.step(torch.tensor([prefix], dtype=torch.long).reshape(1, -1), state)
    logits = logits[0].float()
    if renormalize:
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep[list(allowed)] = True
        logits = logits.masked_fill(~keep, float("-inf"))
    return logits.log_softmax(-1).tolist(), state


def exhaustive_scores(
    decoder: DecoderStep,
    batch_size: int,
    codes: Tensor,
    state: Any = None,
    renormalize: bool = False,
) -> Tensor:
    """[b x N] float32: every item's SID scored from scratch, one prefix at a time."""
    root = dict_trie(codes)
    out = torch.full((batch_size, codes.shape[0]), float("nan"))
    for row in range(batch_size):
        for item, sid in enumerate(codes.tolist()):
            st, node, total = _row_state(decoder, state, row), root, 0.0
            for t, code in enumerate(sid):
                logp, st = _log_probs(decoder, sid[:t], st, node.keys(), renormalize)
                total += logp[code]
                node = node[code]
            out[row, item] = total
    return out


def topk_from_scores(scores: Tensor, topk: int) -> tuple[Tensor, Tensor]:
    """Per row, the topk items by descending score (ties: ascending id), -1/-inf padded."""
    items, values = [], []
    for row in scores.tolist():
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:topk]
        pad = topk - len(order)
        items.append(order + [-1] * pad)
        values.append([row[i] for i in order] + [float("-inf")] * pad)
    return torch.tensor(items, dtype=torch.long), torch.tensor(values)


def reference_beam_search(
    decoder: DecoderStep,
    batch_size: int,
    codes: Tensor,
    beam_width: int,
    topk: int,
    *,
    state: Any = None,
    renormalize: bool = False,
) -> BeamResult:
    """Beam search one batch row and one beam at a time over a dict trie."""
    root = dict_trie(codes)
    levels = codes.shape[1]
    all_items, all_scores, all_sids = [], [], []
    for row in range(batch_size):
        beams = [(0.0, [], _row_state(decoder, state, row), root)]  # (score, prefix, state, node)
        for _ in range(levels):
            cands = []
            for score, prefix, st, node in beams:
                logp, st2 = _log_probs(decoder, prefix, st, node.keys(), renormalize)
                for code, child in node.items():
                    own = decoder.reorder(st2, torch.tensor([0]))  # each child its own copy
                    cands.append((score + logp[code], prefix + [code], own, child))
            beams = sorted(cands, key=lambda c: -c[0])[:beam_width]
        beams = beams[:topk]
        pad = topk - len(beams)
        all_items.append([b[3] for b in beams] + [-1] * pad)
        all_scores.append([b[0] for b in beams] + [float("-inf")] * pad)
        all_sids.append([b[1] for b in beams] + [[-1] * levels] * pad)
    return BeamResult(
        torch.tensor(all_items, dtype=torch.long),
        torch.tensor(all_scores),
        torch.tensor(all_sids, dtype=torch.long).reshape(batch_size, topk, levels),
    )
