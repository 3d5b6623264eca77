"""Eq. 4 log-likelihoods: the batched scorer against a hand computation with the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sidrec.tagging import HFScorer, LMConfig, build_scorer, hf_lm, render_prompt, vllm_lm


def _by_hand(folder, prompt: str, candidate: str) -> tuple[float, int]:
    """Sum over the candidate's tokens (+ EOS) of log p(token | everything before), one
    unpadded sequence, one position at a time: (total log-prob, number of tokens)."""
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    head = tok(prompt, add_special_tokens=False)["input_ids"]
    tail = tok(" " + candidate, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logits = model(ids).logits[0]
    total = 0.0
    for t in range(len(head), len(head) + len(tail)):
        total += torch.log_softmax(logits[t - 1].double(), -1)[ids[0, t]].item()
    return total, len(tail)


def test_scores_match_hand_computation_across_padding_and_batches(tiny_lm):
    prompts = [
        render_prompt("OPI Nail Lacquer, Simmer and Shimmer", [], 0, ["Makeup", "Skin Care"]),
        render_prompt("Argan oil", ["Hair Care"], 1, ["Styling Products", "Shampoos", "Oils"]),
    ]
    cands = [["Makeup", "Skin Care"], ["Styling Products", "Shampoos", "Oils"]]
    # batch_size 2 splits the 5 pairs into 3 padded forward passes of mixed lengths.
    scorer = HFScorer(hf_lm(str(tiny_lm), batch_size=2))
    got = scorer.score(prompts, cands)
    mean_scorer = HFScorer(hf_lm(str(tiny_lm), batch_size=5, per_token=True))
    got_mean = mean_scorer.score(prompts, cands)
    for prompt, names, row, row_mean in zip(prompts, cands, got, got_mean, strict=True):
        hand = [_by_hand(tiny_lm, prompt, c) for c in names]
        np.testing.assert_allclose(row, [h[0] for h in hand], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(row_mean, [h[0] / h[1] for h in hand], rtol=1e-5, atol=1e-4)
        assert (row < 0).all()


def test_a_prefix_candidate_is_charged_for_stopping(tiny_lm):
    """The closing EOS is scored: "Nail" is not just a free prefix of "Nail Polish"."""
    scorer = build_scorer(hf_lm(str(tiny_lm)))
    prompt = render_prompt("OPI", [], 0, ["Nail", "Nail Polish"])
    short, long_ = scorer.score([prompt], [["Nail", "Nail Polish"]])[0]
    head, _ = _by_hand(tiny_lm, prompt, "Nail")
    assert short == pytest.approx(head, abs=1e-4)
    # Without the EOS term, "Nail"'s score would be a partial sum of "Nail Polish"'s.
    tok = scorer.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    nail = tok(" Nail", add_special_tokens=False)["input_ids"]
    lps = scorer.token_logprobs([ids + nail + [tok.eos_token_id]])[0]
    assert short == pytest.approx(lps[len(ids) - 1 :].sum(), abs=1e-6)
    assert lps[-1] < 0 and short != pytest.approx(lps[len(ids) - 1 : -1].sum(), abs=1e-6)


def test_lm_is_required_and_vllm_fails_fast_without_the_package(tiny_lm):
    with pytest.raises(ValueError, match="--lm PATH"):
        LMConfig(model="")
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the missing-package path cannot be exercised")
    with pytest.raises(ImportError, match=r"pip install -e '\.\[gpu\]'"):
        build_scorer(vllm_lm(str(tiny_lm)))
