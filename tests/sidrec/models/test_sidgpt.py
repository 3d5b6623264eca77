"""SID-GPT: teacher forcing against incremental decoding, whole-sequence loss against
per-prefix logits, padding, beam search against exhaustive scoring, builders, and the
seen-item unlikelihood in its loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from sidrec.decoding import SidTrie, constrained_beam_search, random_sid_table
from sidrec.models._unlikelihood import SEEN_EVERY, not_again, sample_read_items
from sidrec.models.bundle import load_bundle, save_bundle
from sidrec.models.sidgpt import SidGPTConfig, sidgpt, sidgpt_beauty

SIZES = [5, 4, 3]


def tiny(
    num_items=40,
    hierarchy_aware=False,
    seed=0,
    text_dim=7,
    trie_softmax=True,
    id_inputs=False,
    seen_penalty=0.0,
):
    codes = random_sid_table(num_items, SIZES, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    text = torch.randn(sum(SIZES), text_dim, generator=g) if hierarchy_aware else None
    torch.manual_seed(seed)
    model = sidgpt(
        codes,
        SIZES,
        d_model=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=32,
        dropout=0.2,
        max_len=8,
        trie_softmax=trie_softmax,
        hierarchy_aware=hierarchy_aware,
        tag_text=text,
        id_inputs=id_inputs,
        seen_penalty=seen_penalty,
    )
    return model.eval(), codes


def catalog(n: int) -> pa.Table:
    """A bundle's item table for n items."""
    return pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int32)),
            "source_id": [f"A{i}" for i in range(n)],
            "title": [f"item {i}" for i in range(n)],
            "text": [""] * n,
            "categories": [["Makeup"] if i % 2 else ["Skin Care"] for i in range(n)],
        }
    )


def sequences(b=4, s=6, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n, (b, s), generator=g)


@pytest.mark.parametrize("hierarchy_aware,id_inputs", [(False, False), (True, False), (True, True)])
def test_loss_backpropagates_to_every_parameter(hierarchy_aware, id_inputs):
    model, _ = tiny(hierarchy_aware=hierarchy_aware, id_inputs=id_inputs)
    model.train()
    x = sequences(s=7)
    loss = model(x[:, :-1], x[:, 1:])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_hierarchy_aware_table_starts_as_the_code_rows_and_learns_the_tag_text():
    """Step 0: the projection is [I | 0 | 0], so the table is the plain code rows;
    one optimiser step later the frozen tag text moves the table."""
    model, _ = tiny(hierarchy_aware=True)
    emb = model.sid_embedding
    torch.testing.assert_close(emb.table(), emb.codes.weight)
    d = emb.codes.embedding_dim
    text_block = emb.proj.weight[:, -emb.text.shape[1] :]
    assert not text_block.any()
    model.train()
    x = sequences(s=7)
    model(x[:, :-1], x[:, 1:]).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert (emb.text @ text_block.T).abs().amax() > 1e-4  # the text's term of the table
    assert not torch.equal(emb.proj.weight[:, :d], torch.eye(d))


@pytest.mark.parametrize(
    "hierarchy_aware,trie_softmax,id_inputs",
    [(False, True, False), (True, True, False), (False, False, False), (True, True, True)],
)
def test_incremental_decoding_equals_teacher_forcing(hierarchy_aware, trie_softmax, id_inputs):
    """step/reorder, with beams expanded batch-major as the search does, give the
    teacher-forced logits of the next item's codes."""
    model, _ = tiny(hierarchy_aware=hierarchy_aware, trie_softmax=trie_softmax, id_inputs=id_inputs)
    history, nxt = sequences(), sequences(s=1, seed=5)[:, 0]
    codes = model.codes_of(nxt)  # [b x L']
    want = model.code_logits(model.hidden(history)[:, -1], nxt)
    state = model.encode(history)
    tokens = torch.zeros(4, 0, dtype=torch.long)
    for t in range(len(SIZES)):
        logits, state = model.step(tokens, state)
        torch.testing.assert_close(logits, want[t], rtol=1e-5, atol=1e-5)
        tokens = torch.cat([tokens, codes[:, t : t + 1]], 1)
        state = model.reorder(state, torch.arange(4).repeat_interleave(3))  # 3 beams per user
        tokens = tokens.repeat_interleave(3, 0)
        state = model.reorder(state, torch.arange(0, 12, 3))  # back to one
        tokens = tokens[::3]


@pytest.mark.parametrize("id_inputs", [False, True])
def test_whole_sequence_loss_equals_the_per_prefix_loss(id_inputs):
    """One causal pass over a sequence gives, at every position, the logits of that
    prefix alone: the whole-sequence loss is the mean of the per-prefix losses."""
    model, _ = tiny(id_inputs=id_inputs)
    x = sequences(b=3, s=7)
    inputs, targets = x[:, :-1], x[:, 1:]
    whole = model(inputs, targets)
    h_all = model.hidden(inputs)
    per_prefix = []
    for t in range(inputs.shape[1]):
        h = model.hidden(inputs[:, : t + 1])[:, -1]
        torch.testing.assert_close(h, h_all[:, t], rtol=1e-5, atol=1e-5)
        codes = model.codes_of(targets[:, t])
        logits = model.code_logits(h, targets[:, t])
        per_prefix.append(
            torch.stack([F.cross_entropy(lg, codes[:, lv]) for lv, lg in enumerate(logits)])
        )
    torch.testing.assert_close(whole, torch.stack(per_prefix).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("id_inputs", [False, True])
def test_left_padding_with_a_mask_changes_nothing(id_inputs):
    model, _ = tiny(id_inputs=id_inputs)
    x = sequences(s=4)
    padded = torch.cat([torch.full((4, 3), -1), x], 1)
    a = model.hidden(x)[:, -1]
    b = model.hidden(padded, valid=padded >= 0)[:, -1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    targets = torch.cat([torch.full((4, 3), -1), x[:, 1:], x[:, :1]], 1)
    loss_dense = model(x, torch.cat([x[:, 1:], x[:, :1]], 1))
    loss_padded = model(padded, targets, valid=padded >= 0)
    torch.testing.assert_close(loss_dense, loss_padded, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "hierarchy_aware,trie_softmax,id_inputs",
    [(False, True, False), (True, True, False), (False, False, False), (False, True, True)],
)
def test_beam_search_with_a_full_beam_equals_exhaustive_scoring(
    hierarchy_aware, trie_softmax, id_inputs
):
    """beam >= N: the beam's top items and scores are the exhaustive ranking of every
    item by its teacher-forced log-probability (`log_prob`)."""
    model, codes = tiny(
        num_items=40, hierarchy_aware=hierarchy_aware, trie_softmax=trie_softmax,
        id_inputs=id_inputs,
    )  # fmt: skip
    history = sequences(b=3)
    trie = SidTrie.build(codes, SIZES)
    result = constrained_beam_search(
        model, 3, trie, beam_width=60, topk=10, state=model.encode(history)
    )
    scores = model.log_prob(history, torch.arange(40).expand(3, -1))
    want = scores.topk(10, dim=1)
    torch.testing.assert_close(result.scores, want.values, rtol=1e-4, atol=1e-4)
    assert result.items.tolist() == want.indices.tolist()
    total = scores.exp().sum(1)
    if trie_softmax:  # a hierarchical softmax over the catalog: exactly a distribution
        torch.testing.assert_close(total, torch.ones(3), rtol=1e-5, atol=1e-5)
    else:  # the full codebook also gives mass to SIDs that hold no item
        assert float(total.max()) < 1.0


def test_builders_and_config_checks():
    codes = random_sid_table(30, SIZES, seed=0)
    cfg = sidgpt_beauty(codes, SIZES).cfg
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.dropout, cfg.max_len) == (
        64,
        2,
        1,
        0.3,
        50,
    )
    assert SidGPTConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="text_dim"):
        sidgpt(
            codes,
            SIZES,
            d_model=8,
            num_layers=1,
            num_heads=1,
            ffn_dim=8,
            dropout=0.0,
            max_len=4,
            hierarchy_aware=True,
        )
    with pytest.raises(ValueError, match="codes outside"):
        bad = codes.clone()
        bad[0, 0] = 99
        sidgpt(bad, SIZES, d_model=8, num_layers=1, num_heads=1, ffn_dim=8, dropout=0.0, max_len=4)
    model, _ = tiny()
    with pytest.raises(ValueError, match="max_len"):
        model.hidden(sequences(s=9))


def test_the_trie_is_rebuilt_when_weights_and_codes_are_loaded():
    """A model whose trie is cached, loaded with another model's weights and SIDs,
    masks with the loaded SIDs: loading resets the cached trie."""
    model, _ = tiny(seed=0)
    other, _ = tiny(seed=3)  # other SIDs for the same 40 items
    history = sequences(b=2)
    want = other.log_prob(history, torch.arange(40).expand(2, -1))
    model.trie()  # cache the trie of its own SIDs
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(model.log_prob(history, torch.arange(40).expand(2, -1)), want)


def test_trie_softmax_trains_only_among_siblings():
    """With one item under a prefix, its last levels cost nothing: the loss is the
    level-0 (and level-1) choice only; the full-codebook head pays for every level."""
    codes = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 0, 2], [2, 3, 1]])
    losses = {}
    for trie_softmax in (True, False):
        torch.manual_seed(0)
        model = sidgpt(
            codes,
            SIZES,
            d_model=8,
            num_layers=1,
            num_heads=1,
            ffn_dim=8,
            dropout=0.0,
            max_len=4,
            trie_softmax=trie_softmax,
        ).eval()
        x = torch.tensor([[0, 1, 2, 3]])
        with torch.no_grad():
            logits = model.code_logits(model.hidden(x[:, :-1]), x[:, 1:])
        losses[trie_softmax] = [
            F.cross_entropy(lg[0], model.codes_of(x[0, 1:])[:, t]) for t, lg in enumerate(logits)
        ]
    # items 1..3: level 2 has a single child under each (c0, c1) prefix -> loss 0
    assert float(losses[True][2]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses[False][2]) > 0.5


def test_codes_are_stored_compact_and_old_int64_weights_still_load():
    model, codes = tiny()
    assert model.item_codes.dtype == torch.uint8 and torch.equal(model.item_codes.long(), codes)
    history = sequences(b=2)
    want = model.log_prob(history, torch.arange(40).expand(2, -1))
    state = model.state_dict()
    assert state["item_codes"].dtype == torch.uint8
    fresh, _ = tiny(seed=3)
    fresh.load_state_dict({**state, "item_codes": state["item_codes"].long()})  # an old bundle
    assert fresh.item_codes.dtype == torch.uint8
    torch.testing.assert_close(fresh.log_prob(history, torch.arange(40).expand(2, -1)), want)
    nodes = model.trie()[1]
    assert nodes.dtype == torch.int32 and nodes.shape == (40, len(SIZES))


def test_a_loaded_bundle_decodes_with_its_own_trie_from_the_start(tmp_path):
    """load_bundle hands SID-GPT the bundle's trie (no second trie, none built at the
    first request), and the answers are those of a model that builds its own."""
    from sidrec.data.sids import SidTable, disambiguate

    base = np.random.default_rng(0).integers(0, SIZES[:2], size=(40, 2))  # collisions
    table = SidTable(base, disambiguate(base), SIZES[:2], meta={"learner": "test"})
    torch.manual_seed(0)
    model = sidgpt(
        table.full_codes(), table.full_codebook_sizes(), d_model=16, num_layers=1,
        num_heads=2, ffn_dim=32, dropout=0.0, max_len=8,
    )  # fmt: skip
    items = catalog(40)
    folder = save_bundle(
        tmp_path / "b", "sidgpt", model.cfg.to_dict(), model.state_dict(), items, table
    )
    rec = load_bundle(folder)
    assert rec.model._sid_trie is not None and rec.model._item_nodes is None  # warm, no nodes
    assert torch.equal(rec.model._sid_trie.sids, rec.trie.sids)
    own = load_bundle(folder)
    own.model._forget_trie()  # as before: built from item_codes at the first request
    histories = [[1, 2, 3], [7], [5, 5]]
    got, want = rec.recommend(histories, k=5), own.recommend(histories, k=5)
    assert torch.equal(got.items, want.items) and torch.equal(got.scores, want.scores)
    assert own.model._sid_trie is not None  # (the old path did build one)
    with pytest.raises(ValueError, match="not this model's item_codes"):
        model.use_trie(SidTrie.build(random_sid_table(40, SIZES, seed=9), SIZES))


def test_id_inputs_tell_apart_items_that_share_a_sid():
    """Two items on one SID read alike without id rows and differently with them;
    the rows are N x d parameters, absent unless asked for."""
    codes = torch.tensor([[0, 1, 2], [0, 1, 2], [3, 0, 1]])  # items 0 and 1 collide
    arch = dict(d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0, max_len=4)
    torch.manual_seed(0)
    plain = sidgpt(codes, SIZES, **arch).eval()
    torch.manual_seed(0)
    with_ids = sidgpt(codes, SIZES, **arch, id_inputs=True).eval()
    assert plain.item_inputs is None
    assert with_ids.item_inputs.weight.shape == (3, 16)
    histories = torch.tensor([[2, 0], [2, 1]])
    h_plain, h_ids = plain.hidden(histories)[:, -1], with_ids.hidden(histories)[:, -1]
    torch.testing.assert_close(h_plain[0], h_plain[1])
    assert not torch.allclose(h_ids[0], h_ids[1])
    assert SidGPTConfig(**with_ids.cfg.to_dict()).id_inputs is True


def test_a_bundle_with_id_inputs_loads_and_answers_alike(tmp_path):
    from sidrec.data.sids import SidTable, disambiguate

    base = np.random.default_rng(0).integers(0, SIZES[:2], size=(40, 2))
    table = SidTable(base, disambiguate(base), SIZES[:2], meta={"learner": "test"})
    torch.manual_seed(0)
    model = sidgpt(
        table.full_codes(), table.full_codebook_sizes(), d_model=16, num_layers=1,
        num_heads=2, ffn_dim=32, dropout=0.0, max_len=8, id_inputs=True,
    ).eval()  # fmt: skip
    with torch.no_grad():  # rows that matter: not the tiny Xavier start
        model.item_inputs.weight.normal_()
    items = catalog(40)
    folder = save_bundle(
        tmp_path / "b", "sidgpt", model.cfg.to_dict(), model.state_dict(), items, table
    )
    rec = load_bundle(folder)
    assert rec.model.cfg.id_inputs
    torch.testing.assert_close(rec.model.item_inputs.weight, model.item_inputs.weight)
    history = torch.tensor([[1, 2, 3]])
    want = model.log_prob(history, torch.arange(40)[None])
    got = rec.model.log_prob(history, torch.arange(40)[None])
    torch.testing.assert_close(got, want)


def test_id_dropout_drops_whole_id_rows_in_training_only():
    """Each position's id row is kept whole or zeroed (not rescaled), about
    id_dropout of them zeroed in training; evaluation reads every row."""
    codes = random_sid_table(40, SIZES, seed=0)
    arch = dict(d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0, max_len=8)
    model = sidgpt(codes, SIZES, **arch, id_inputs=True, id_dropout=0.5)
    items = torch.randint(40, (64, 8), generator=torch.Generator().manual_seed(1))
    rows = model.item_inputs(items)
    torch.manual_seed(2)
    dropped = model.train()._id_rows(items)
    zeroed = (dropped == 0).all(-1)
    assert torch.equal(dropped[~zeroed], rows[~zeroed])
    assert 0.4 < zeroed.float().mean() < 0.6
    assert torch.equal(model.eval()._id_rows(items), rows)
    with pytest.raises(ValueError, match="id_dropout=0.5 drops id rows: set id_inputs"):
        sidgpt(codes, SIZES, **arch, id_dropout=0.5)
    with pytest.raises(ValueError, match=r"id_dropout=1\.0 is a probability"):
        sidgpt(codes, SIZES, **arch, id_inputs=True, id_dropout=1.0)


def test_sidgpt_adds_the_mean_unlikelihood_of_the_sampled_items_under_log_prob():
    """loss = the code CE + weight x mean over the sampled positions with a read item of
    -log(1 - p(item | prefix)), p the product of the trie-masked code softmaxes (as
    SID-GPT's exhaustive log_prob); weight 0 = the plain loss."""
    x = torch.randint(40, (3, 7), generator=torch.Generator().manual_seed(1))
    inputs, targets = x[:, :-1], x[:, 1:]
    (plain, _), (penalised, _) = tiny(), tiny(seen_penalty=2.0)  # the same weights (seed 0)
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


def test_seen_penalty_on_a_padded_batch_draws_no_padding_and_gives_a_finite_loss():
    model = tiny(seen_penalty=1.0)[0].train()
    inputs = torch.tensor([[-1, -1, 3, 4], [5, 6, 7, 8]])
    targets = torch.tensor([[-1, -1, 4, 9], [6, 7, 8, 9]])
    loss = model(inputs, targets, valid=inputs >= 0)
    assert torch.isfinite(loss)
    loss.backward()
