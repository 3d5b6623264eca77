"""LM-Rec on tiny random BERT, GPT-2 and OPT backbones built in code (the packaged
MiniLM's tokenizer, no downloads): incremental decoding against teacher forcing,
the whole-sequence loss against per-prefix losses, a full beam against exhaustive
scoring, L_align learning, and what the state dict holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidrec.decoding import SidTrie, constrained_beam_search, random_sid_table
from sidrec.models._data import Rows
from sidrec.models._hf_backbone import load_backbone, packaged_minilm_path
from sidrec.models.lmrec import LMRecConfig, lmrec
from sidrec.models.train.config import TrainConfig
from sidrec.models.train.lmrec_loop import cut_rows

SIZES = [5, 4, 3]
N = 40
VOCAB = 30522  # the MiniLM tokenizer's, which the random backbones borrow
BACKBONES = {
    "bert": {"model_type": "bert", "vocab_size": VOCAB, "hidden_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 128},
    "gpt2": {"model_type": "gpt2", "vocab_size": VOCAB, "n_embd": 32, "n_layer": 2,
             "n_head": 2, "n_positions": 128},
    "opt": {"model_type": "opt", "vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "ffn_dim": 64, "word_embed_proj_dim": 16,
            "max_position_embeddings": 128},
}  # fmt: skip


def tiny(backbone="bert", titles=False, seed=0, **over):
    codes = random_sid_table(N, SIZES, seed=seed)
    torch.manual_seed(seed)
    model = lmrec(
        codes, SIZES, tokenizer=packaged_minilm_path(), random_config=BACKBONES[backbone],
        lora_rank=4, lora_alpha=8, titles=titles, title_tokens=3, align_tokens=6,
        max_history=8, **over,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    # Titles of 1..3 pieces (ragged: padding inside the sequence), texts of 6.
    titles_ids = torch.randint(1000, 2000, (N, 3), generator=g)
    titles_ids[torch.arange(N) % 3 == 0, 1:] = -1
    model.set_item_text(titles_ids, torch.randint(1000, 2000, (N, 6), generator=g))
    return model.eval(), codes


def histories(b=4, s=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(N, (b, s), generator=g)
    x[0, :2] = -1  # a left-padded row
    return x


@pytest.mark.parametrize("titles", [False, True])
@pytest.mark.parametrize("backbone", ["bert", "gpt2", "opt"])
def test_incremental_decoding_equals_teacher_forcing(backbone, titles):
    """encode/step/reorder (beams expanded batch-major, as the search does) give the
    teacher-forced logits of the next item's codes, level by level."""
    model, _ = tiny(backbone, titles)
    assert model.prefix_lm == (backbone == "bert")
    history, nxt = histories(), histories(s=1, seed=5)[:, 0].clamp(min=0)
    want = model.code_logits(history, nxt)
    codes = model.item_codes[nxt]
    state, tokens = model.encode(history), torch.zeros(4, 0, dtype=torch.long)
    for t in range(len(SIZES)):
        logits, state = model.step(tokens, state)
        torch.testing.assert_close(logits, want[t], rtol=1e-4, atol=1e-5)
        tokens = torch.cat([tokens, codes[:, t : t + 1]], 1)
        state = model.reorder(state, torch.arange(4).repeat_interleave(3))  # 3 beams a user
        tokens = tokens.repeat_interleave(3, 0)
        state = model.reorder(state, torch.arange(0, 12, 3))  # back to one
        tokens = tokens[::3]


@pytest.mark.parametrize("backbone", ["gpt2", "bert"])
def test_whole_sequence_loss_equals_the_per_prefix_loss(backbone):
    """Causal attention (a decoder, or an encoder with prefix_lm=False): one pass over
    the row gives every next item's teacher-forced logits, so L_rip equals the
    per-prefix losses."""
    model, _ = tiny(backbone, titles=True, prefix_lm=False)
    rows = histories(b=3, s=6).clamp(min=0)
    whole = model.rip_loss(rows)
    per_level = [[] for _ in SIZES]
    for k in range(1, rows.shape[1]):
        logits = model.code_logits(rows[:, :k], rows[:, k])
        for level, lg in enumerate(logits):
            target = model.item_codes[rows[:, k], level]
            per_level[level].append(F.cross_entropy(lg, target, reduction="none"))
    want = torch.stack([torch.cat(p).mean() for p in per_level]).mean()
    torch.testing.assert_close(whole, want, rtol=1e-5, atol=1e-6)


def test_left_padding_changes_nothing():
    model, _ = tiny("bert", titles=True)
    x = histories(b=3, s=4).clamp(min=0)
    padded = torch.cat([torch.full((3, 2), -1), x], 1)
    a = model.encode(x).hidden
    b = model.encode(padded).hidden
    c = model.encode(padded, valid=padded >= 0).hidden
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", ["bert", "opt"])
def test_beam_search_with_a_full_beam_equals_exhaustive_scoring(backbone):
    """beam >= N: the beam's top items and scores are every item ranked by its
    teacher-forced log-probability, a distribution over the catalog (trie softmax)."""
    model, codes = tiny(backbone, titles=True)
    history = histories(b=3)
    trie = SidTrie.build(codes, SIZES)
    result = constrained_beam_search(
        model, 3, trie, beam_width=60, topk=10, state=model.encode(history)
    )
    scores = model.log_prob(history, torch.arange(N).expand(3, -1))
    want = scores.topk(10, dim=1)
    torch.testing.assert_close(result.scores, want.values, rtol=1e-4, atol=1e-4)
    assert result.items.tolist() == want.indices.tolist()
    torch.testing.assert_close(scores.exp().sum(1), torch.ones(3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", ["bert", "gpt2"])
def test_align_losses_decrease(backbone):
    """Both directions of L_align (text -> SID through the trie head; SID -> text,
    MLM-style on an encoder, LM-style on a decoder) fall with training."""
    model, _ = tiny(backbone)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    items = torch.arange(16)
    first = last = None
    for step in range(25):
        g = torch.Generator().manual_seed(step % 2)
        to_sid, to_text = model.align_losses(items, g)
        last = (float(to_sid.detach()), float(to_text.detach()))
        first = first or last
        opt.zero_grad()
        (to_sid + to_text).backward()
        opt.step()
    # text -> SID picks among <= 5 codes a level; SID -> text among 30k word pieces,
    # and a decoder reads them through its frozen LM head (here random, ~0.1-norm
    # rows, so its logits move slowly: only LoRA and the SID tokens learn).
    margin = 0.3 if backbone == "bert" else 0.05
    assert last[0] < 0.7 * first[0] and last[1] < first[1] - margin, (first, last)


def test_every_trainable_parameter_gets_a_gradient_and_base_weights_stay_frozen():
    model, _ = tiny("bert")
    model.train()
    loss = model(histories(b=3, s=5).clamp(min=0), torch.arange(6), 1.0)
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    assert any("lora_" in n for n in trainable) and "sid_embedding.weight" in trainable
    assert not any("lora_" not in n and n.startswith("lm.") for n in trainable)


def test_state_dict_holds_the_adapter_not_the_pretrained_base():
    """A pretrained backbone's frozen weights stay out of the state dict (a bundle
    names the backbone); loading it into a fresh model restores every output."""
    codes = random_sid_table(N, SIZES, seed=0)
    torch.manual_seed(0)
    model = lmrec(codes, SIZES, lora_rank=2, lora_alpha=4, max_history=4).eval()
    with torch.no_grad():  # LoRA's B starts at zero: make the adapter matter
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    state = model.state_dict()
    assert not any("base_layer" in k or "word_embeddings" in k for k in state)
    assert any("lora_A" in k for k in state) and "item_codes" in state
    fresh = lmrec(torch.zeros_like(codes), SIZES, lora_rank=2, lora_alpha=4, max_history=4).eval()
    fresh.load_state_dict(state)
    x = histories(b=2, s=3).clamp(min=0)
    torch.testing.assert_close(fresh.encode(x).hidden, model.encode(x).hidden)
    assert fresh.cfg == LMRecConfig(**model.cfg.to_dict())


def test_cut_rows_keeps_a_suffix_ending_at_the_target():
    hist = np.array([[-1, -1, 1, 2, 3], [4, 5, 6, 7, 8]])
    rows = Rows(np.arange(2), hist, np.array([3, 5]), np.full(2, -1))
    out = cut_rows(rows, np.random.default_rng(0))
    for n, keep in zip(rows.lengths, out.lengths, strict=True):
        assert 2 <= keep <= n
    for i in range(2):
        real = out.history[i][out.history[i] >= 0]
        assert len(real) == out.lengths[i] and (out.history[i][: 5 - out.lengths[i]] == -1).all()
        assert real.tolist() == hist[i][hist[i] >= 0][: out.lengths[i]].tolist()


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="lmrec: unknown keys"):
        TrainConfig.from_dict({"root": "/x", "lmrec": {"lora_rnak": 8}})
    with pytest.raises(ValueError, match="model_type"):
        lmrec(random_sid_table(N, SIZES), SIZES, random_config={"hidden_size": 8})
    model, _ = tiny("gpt2", titles=True)
    with pytest.raises(ValueError, match="positions"):
        model._run(torch.zeros(1, 200, dtype=torch.long), 0)


def test_the_packaged_minilm_loads_without_an_error_looking_report(capfd):
    # Its pooler is left out on purpose; transformers would list those weights as
    # UNEXPECTED in a table and draw a loading bar, which read like errors in a log.
    load_backbone(
        "", "", None, lora_rank=2, lora_alpha=4, lora_dropout=0.0, lora_targets="all-linear"
    )
    out, err = capfd.readouterr()
    assert "UNEXPECTED" not in out + err and "LOAD REPORT" not in out + err
    assert "Loading weights" not in err


def test_text_seeded_sid_embeddings_follow_their_items_text():
    """sid_init "text": a level-0 code's row is nearest (cosine) the mean word vector
    of its own items' text, rows keep the word table's spread, a code no item uses
    keeps its random row, and the config names a bad choice."""
    model, codes = tiny(sid_init="text")
    # Items of one level-0 code share their text's word pieces; codes differ.
    text = 1000 + 50 * codes[:, :1] + torch.arange(6)[None]
    model.set_item_text(torch.full((N, 3), -1), text)
    table = codes.clone()
    table[:, 1] = table[:, 1] % 3  # level 1's code 3: no item
    model.set_item_codes(table)
    before = model.sid_embedding.weight.detach().clone()
    model.seed_sids_from_text()
    rows = model.sid_embedding.weight.detach()
    words = model._bb.word_embeddings.weight.detach()
    k0 = SIZES[0]
    item_means = torch.stack([words[text[table[:, 0] == c][0]].mean(0) for c in range(k0)])
    centred = lambda x: F.normalize(x - x.mean(0), dim=-1)  # noqa: E731
    nearest = (centred(rows[:k0]) @ centred(item_means).T).argmax(1)
    assert nearest.tolist() == list(range(k0))
    spread = rows[:k0].std() / words.std()
    assert 0.8 < float(spread) < 1.25, spread
    unused = k0 + 3
    torch.testing.assert_close(rows[unused], before[unused])
    assert not torch.equal(rows[:unused], before[:unused])
    with pytest.raises(ValueError, match="sid_init"):
        LMRecConfig(num_items=N, codebook_sizes=SIZES, sid_init="mean")
    seeded = rows.clone()
    model.set_item_text(torch.full((N, 3), -1), torch.full((N, 6), -1))
    with pytest.raises(ValueError, match="set_item_text"):
        model.seed_sids_from_text()
    torch.testing.assert_close(model.sid_embedding.weight.detach(), seeded)  # left as it was
