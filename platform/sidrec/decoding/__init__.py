"""sidrec.decoding: trie-constrained beam search over semantic IDs.

`SidTrie` flattens the valid SIDs into per-level CSR transition tables (plus
dense allowed-code masks at the levels where they are small: memory O(N L)
bytes, ~13-20 B/item) that live on the model's device;
`constrained_beam_search` decodes top-k items for a whole batch with one
vectorized mask per level, so that invalid SIDs are impossible by
construction (TIGER §3.2; HiD-VAE App. C.2). A model plugs in through the
`DecoderStep` protocol (`step` + `reorder` of its opaque state).

    trie = SidTrie.build(codes, codebook_sizes=256).to(device)    # codes: [N x L]
    items, scores, sids = constrained_beam_search(
        model, batch_size=b, trie=trie, beam_width=20, topk=20, state=model.encode(history)
    )                                                              # [b x 20], [b x 20], [b x 20 x L]

`sidrec.decoding.toy` holds deterministic random decoders and SID tables for
tests and benchmarks; `_reference` the slow dict-trie search the tests check
against.
"""

from sidrec.decoding.beam import BeamResult, DecoderStep, constrained_beam_search
from sidrec.decoding.toy import ToyRNNDecoder, ToyTransformerDecoder, random_sid_table
from sidrec.decoding.trie import SidTrie

__all__ = [
    "BeamResult",
    "DecoderStep",
    "SidTrie",
    "ToyRNNDecoder",
    "ToyTransformerDecoder",
    "constrained_beam_search",
    "random_sid_table",
]
