"""What an LM-Rec run on Beauty costs, to size it before running it (issue 17).

    PYTHONPATH=platform python bench/lmrec_cost.py --artifact-root ~/sidrec-artifacts/beauty \\
        --sids ~/sidrec-artifacts/beauty/sids/rqvae.parquet [--lmrec '{"align_batch": 16}']

For `lmrec_minilm` with LMREC_RECIPE's batch and the loop's defaults (or
--lmrec knobs over them), it counts (torch's FlopCounterMode: matmuls and
attention) and times, on real rows of the epoch:
- a phase-1 step (L_rip on a batch of rows cut at random + lambda * L_align on
  align_batch catalog items), forward + backward;
- a phase-2 step (L_rip alone);
- one valid-pass batch (encode + trie beam search, beam 20, 64 random valid users),
and extrapolates an epoch of each phase and a full valid pass (22,363 users).
Timings are as quiet as the box: the load average before and after is printed.
`bench/mfu.py --models lmrec` gives the same step's MFU over more steps.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sidrec.data import load_items
from sidrec.decoding import SidTrie, constrained_beam_search
from sidrec.models._data import sequence_rows, split_rows
from sidrec.models.lmrec import tokenize_item_texts
from sidrec.models.registry import model_kind
from sidrec.models.train import build_lmrec
from sidrec.models.train._common import load_data
from sidrec.models.train.config import TrainConfig
from sidrec.models.train.lmrec_loop import LMREC_LOOP_DEFAULTS, cut_rows


def counted(fn) -> tuple[float, float]:
    """(GFLOP, seconds) of fn(): timed once, then counted once."""
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifact-root", required=True)
    p.add_argument("--sids", required=True)
    p.add_argument("--lmrec", default="{}", help="JSON knobs over the preset (LMREC_KNOBS)")
    args = p.parse_args()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    knobs = json.loads(args.lmrec)
    cfg = TrainConfig.from_dict(
        {**model_kind("lmrec").recipe, "root": args.artifact_root, "sids": args.sids,
         "lmrec": knobs}
    )  # fmt: skip
    loop = {**LMREC_LOOP_DEFAULTS, **{k: v for k, v in knobs.items() if k in LMREC_LOOP_DEFAULTS}}
    torch.manual_seed(0)
    data = load_data(cfg)
    model = build_lmrec(cfg, data.num_items)
    items = load_items(cfg.root)
    model.set_item_text(
        *tokenize_item_texts(model.tokenizer, items, model.cfg.title_tokens, model.cfg.align_tokens)
    )
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    rng = np.random.default_rng(0)
    rows = sequence_rows(data.sequences, model.cfg.max_history)
    if model.prefix_lm:
        rows = cut_rows(rows, rng)
    # A batch as the loop builds them (one length per batch), at the median length.
    length = int(np.median(rows.lengths))
    pick = rng.permutation(np.flatnonzero(rows.lengths == length))[: cfg.batch_size]
    batch = torch.as_tensor(rows.history[pick][:, -length:])
    align = torch.as_tensor(rng.integers(0, data.num_items, loop["align_batch"]))

    def step(with_align: bool):
        def run():
            model.train()
            loss = model(batch, align, loop["align_weight"]) if with_align else model(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return run

    trie = SidTrie.build(model.item_codes, model.cfg.codebook_sizes)
    valid = split_rows(data.valid, model.cfg.max_history)
    users = rng.permutation(len(valid))[:64]
    hist = torch.as_tensor(valid.history[users])

    @torch.no_grad()
    def decode():
        model.eval()
        state = model.encode(hist, None, hist >= 0)
        constrained_beam_search(model, len(users), trie, beam_width=20, topk=20, state=state)

    steps = int(np.ceil(len(rows) / cfg.batch_size))
    out = {
        "phase 1 step": counted(step(True)),
        "phase 2 step": counted(step(False)),
        "valid batch (64 users)": counted(decode),
    }
    for name, (gflop, seconds) in out.items():
        print(f"{name:<24} {gflop:9.1f} GFLOP {seconds:8.2f} s {gflop / seconds:7.1f} GFLOP/s")
    for phase in (1, 2):
        gflop, seconds = out[f"phase {phase} step"]
        print(f"phase {phase} epoch: {steps} steps, ~{steps * gflop / 1e3:.1f} TFLOP, "
              f"~{steps * seconds / 60:.1f} min")  # fmt: skip
    gflop, seconds = out["valid batch (64 users)"]
    scale = len(valid) / len(users)
    print(f"valid pass: {len(valid)} users, ~{scale * gflop / 1e3:.1f} TFLOP, "
          f"~{scale * seconds / 60:.1f} min")  # fmt: skip
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
