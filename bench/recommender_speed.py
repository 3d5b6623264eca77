"""Training-step and decode speed of TIGER and SASRec on the real Beauty batches.

    python bench/recommender_speed.py --artifact-root /tmp/art/beauty --model tiger --steps 200
    python bench/recommender_speed.py --model tiger --device cuda --bf16 --compile --batch-size 4096 --steps 300
    python bench/recommender_speed.py --model sasrec --loss ce --steps 100

What it measures (figures in docs/RESULTS_recommender_2026-11.md):
- train: `--steps` optimizer steps (after `--warmup` untimed ones) of the
  preset (tiger_small, sasrec_beauty) on the length-bucketed, padding-free
  batches that `sidrec.models.train` builds from the real training data,
  in a random order, with the same optimizer step as the loop (AdamW + clip
  for TIGER, Adam for SASRec). Reports ms/step, examples/s and the epoch
  time *extrapolated* by tokens (tokens per epoch / tokens per second; a
  batch's cost follows its history length): an estimate, not a timed epoch.
  TIGER tokens = encoder (1 + s x L') + decoder (L'); SASRec = positions.
- decode (TIGER): users/s of `constrained_beam_search` at `--beam` (top-k =
  beam) over valid-split users in length-bucketed batches of
  `--decode-batch`, encoder included, in eval mode.
SIDs: `--sids PATH`, else a random 3 x 256 table plus the disambiguation
level: the speed depends on K and L', not on which codes items get.
Threads: `--threads` (1 on a shared box: OpenMP fan-out under contention
costs more than it saves).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sidrec.data import ensure_ingested, load_items, load_split, train_sequences
from sidrec.data.sids import SidTable, disambiguate, read_sid_table
from sidrec.decoding import SidTrie, constrained_beam_search
from sidrec.models._data import length_buckets, sequence_rows, split_rows
from sidrec.models.sasrec import sasrec_beauty
from sidrec.models.tiger import tiger_small


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--artifact-root", default=str(Path("~/sidrec-artifacts/beauty").expanduser()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", choices=("tiger", "sasrec"), default="tiger")
    p.add_argument("--loss", choices=("ce", "bce"), default="ce")
    p.add_argument("--sids", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: the recipe's (1024 TIGER, 256 SASRec)",
    )
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--decode-batch", type=int, default=256)
    p.add_argument("--decode-users", type=int, default=1024)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p.parse_args()


def random_sids(num_items: int, seed: int = 0) -> SidTable:
    codes = np.random.default_rng(seed).integers(0, 256, (num_items, 3))
    return SidTable(codes, disambiguate(codes), [256, 256, 256])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(args, model, batches, make_batch, lengths, tokens_per_row, device) -> dict:
    """tokens_per_row(length) -> the tokens one example of that history length costs."""
    params = [p for p in model.parameters() if p.requires_grad]
    if args.model == "tiger":
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    else:
        opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.98))
    step_model = torch.compile(model, dynamic=True) if args.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    model.train()
    order = np.random.default_rng(0).permutation(len(batches))
    total = args.warmup + args.steps
    picks = [batches[order[i % len(order)]] for i in range(total)]
    examples = tokens = 0
    for i, idx in enumerate(picks):
        if i == args.warmup:
            sync(device)
            start = time.perf_counter()
            examples = tokens = 0
        with autocast:
            loss = step_model(*make_batch(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.model == "tiger":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        examples += len(idx)
        tokens += len(idx) * tokens_per_row(int(lengths[idx[0]]))
    sync(device)
    seconds = time.perf_counter() - start
    epoch_tokens = int(sum(tokens_per_row(int(n)) for n in lengths))
    # A batch costs in proportion to its tokens (history length varies by bucket):
    # extrapolate by tokens, not by steps or examples.
    return {
        "steps": args.steps,
        "ms_per_step": 1000 * seconds / args.steps,
        "examples_per_s": examples / seconds,
        "tokens_per_s": tokens / seconds,
        "examples_per_epoch": int(len(lengths)),
        "tokens_per_epoch": epoch_tokens,
        "steps_per_epoch": len(batches),
        "epoch_seconds_extrapolated": epoch_tokens / (tokens / seconds),
        "final_loss": float(loss),
    }


@torch.no_grad()
def decode_speed(args, model, trie, rows, device) -> dict:
    model.eval()
    users = np.arange(min(args.decode_users, len(rows)))
    batches = length_buckets(rows.lengths[users], args.decode_batch)
    history = torch.as_tensor(rows.history, device=device)
    ids = torch.as_tensor(rows.users, device=device)

    def run(idx):
        idx_t = torch.as_tensor(idx, device=device)
        length = int(rows.lengths[idx[0]])
        state = model.encode(history[idx_t, -length:], ids[idx_t])
        return constrained_beam_search(model, len(idx), trie, args.beam, args.beam, state=state)

    run(batches[0])  # warm-up (allocations, kernels)
    sync(device)
    start = time.perf_counter()
    for idx in batches:
        run(idx)
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "users": int(len(users)),
        "beam": args.beam,
        "batch": args.decode_batch,
        "users_per_s": len(users) / seconds,
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    root = Path(args.artifact_root)
    ensure_ingested("beauty", root, data_dir=args.data_dir, track=False)
    num_items = load_items(root).num_rows
    torch.manual_seed(0)
    result: dict = {
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "bf16": args.bf16,
        "compile": args.compile,
    }
    if args.model == "tiger":
        table = read_sid_table(args.sids, num_items) if args.sids else random_sids(num_items)
        model = tiger_small(torch.as_tensor(table.full_codes()), table.full_codebook_sizes()).to(
            device
        )
        rows = split_rows(load_split(root, "train"), model.cfg.max_history)
        hist = torch.as_tensor(rows.history, device=device)
        users = torch.as_tensor(rows.users, device=device)
        targets = torch.as_tensor(rows.targets, device=device)
        batch = args.batch_size or 1024

        def make_batch(idx):
            idx_t = torch.as_tensor(idx, device=device)
            length = int(rows.lengths[idx[0]])
            return hist[idx_t, -length:], users[idx_t], targets[idx_t]

        batches = length_buckets(rows.lengths, batch, np.random.default_rng(0))
        result["codebook_sizes"] = table.full_codebook_sizes()
        levels = model.cfg.num_levels
        result["train"] = train_speed(
            args,
            model,
            batches,
            make_batch,
            rows.lengths,
            lambda n: 1 + n * levels + levels,
            device,
        )
        trie = SidTrie.build(model.item_codes.cpu(), model.cfg.codebook_sizes).to(device)
        valid = split_rows(load_split(root, "valid"), model.cfg.max_history)
        result["decode"] = decode_speed(args, model, trie, valid, device)
    else:
        model = sasrec_beauty(num_items, loss=args.loss).to(device)
        rows = sequence_rows(train_sequences(root), model.cfg.max_len)
        seq = torch.as_tensor(rows.history, device=device)
        batch = args.batch_size or 256

        def make_batch(idx):
            x = seq[torch.as_tensor(idx, device=device), -int(rows.lengths[idx[0]]) :]
            return x[:, :-1], x[:, 1:]

        batches = length_buckets(rows.lengths, batch, np.random.default_rng(0))
        result["loss"] = args.loss
        result["train"] = train_speed(
            args, model, batches, make_batch, rows.lengths, lambda n: n - 1, device
        )
    result["batch_size"] = batch
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
