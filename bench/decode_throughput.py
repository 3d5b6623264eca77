"""Decode throughput of the batched, trie-constrained beam search (users/s).

    python bench/decode_throughput.py                     # 12,101 items x 3 levels, K=256, beam 20
    python bench/decode_throughput.py --threads 1 --batch-sizes 1 32 256 --beam 20 --min-seconds 4

What it measures, per batch size b:
- `transformer`: a TIGER-sized decoder step (`ToyTransformerDecoder`: d_model
  128, 4 layers, 6 heads x 64, FFN 1024, self-attention KV cache,
  cross-attention to 61 encoder tokens per user) with random weights, driven
  by `constrained_beam_search` over a random SID table; constrained vs the
  same loop with the mask off (`constrained=False`).
- `search only`: the same with a decoder that returns precomputed logits, so
  the figure is the search's own cost (mask gather, top-k, child lookup,
  reorders).
Also the time to build the trie (12k x 3 and 1M x 4 tables, on the CPU) and
its memory. Figures are in docs/RESULTS_decode.md. No encoder runs (each
user's memory is random); projecting it to cross-attention K/V is timed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from sidrec.decoding import (
    SidTrie,
    ToyTransformerDecoder,
    constrained_beam_search,
    random_sid_table,
)


class FixedLogits:
    """A zero-cost decoder: slices of one random logit table; reorder is free."""

    def __init__(self, sizes: list[int], rows: int, device: str):
        gen = torch.Generator().manual_seed(0)
        self.logits = [torch.randn(rows, k, generator=gen).to(device) for k in sizes]

    def step(self, tokens, state):
        return self.logits[tokens.shape[1]][: tokens.shape[0]], state

    def reorder(self, state, index):
        return state


def users_per_second(decoder, state_fn, b, trie, beam, min_seconds, rounds) -> tuple[float, float]:
    """(constrained, unconstrained) users/s: the median over `rounds` alternating timings.

    The box is shared: alternating the two modes round by round spreads any
    load from other processes over both columns instead of biasing one.
    """

    def call(constrained: bool) -> None:
        constrained_beam_search(
            decoder, b, trie, beam, beam, state=state_fn(b), constrained=constrained
        )
        if trie.device.type == "cuda":
            torch.cuda.synchronize()  # time the work, not the kernel launches

    runs = {c: lambda c=c: call(c) for c in (True, False)}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for run in runs.values():
        run()  # warm-up
    for _ in range(rounds):
        for c, run in runs.items():
            calls, start = 0, time.perf_counter()
            while calls == 0 or time.perf_counter() - start < min_seconds / rounds:
                run()
                calls += 1
            rates[c].append(b * calls / (time.perf_counter() - start))
    return statistics.median(rates[True]), statistics.median(rates[False])


def build_seconds(num_items: int, sizes: list[int]) -> tuple[float, dict[str, int]]:
    codes = random_sid_table(num_items, sizes, seed=0)
    start = time.perf_counter()
    trie = SidTrie.build(codes, sizes)
    return time.perf_counter() - start, trie.nbytes()


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [args.codebook_size] * args.levels
    device = args.device
    trie = SidTrie.build(random_sid_table(args.items, sizes, seed=0), sizes).to(device)
    model = ToyTransformerDecoder(sizes).to(device)  # TIGER decoder dimensions (tiger_small)
    fixed = FixedLogits(sizes, max(args.batch_sizes) * args.beam, device)
    where = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"# {where}: torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# {args.items} items x {args.levels} levels, K={args.codebook_size}, beam {args.beam}")
    print("| decoder | batch | constrained users/s | unconstrained users/s | constrained cost |")
    print("|---|---:|---:|---:|---:|")
    for name, decoder, state_fn in [
        ("transformer", model, lambda b: model.init_state(torch.arange(b, device=device))),
        ("search only", fixed, lambda b: None),
    ]:
        for b in args.batch_sizes:
            on, off = users_per_second(
                decoder, state_fn, b, trie, args.beam, args.min_seconds, args.rounds
            )
            print(f"| {name} | {b} | {on:,.1f} | {off:,.1f} | {off / on - 1:+.1%} |")
    for n, levels in [(args.items, args.levels), (1_000_000, 4)]:
        seconds, nbytes = build_seconds(n, [args.codebook_size] * levels)
        mb = {k: v / 2**20 for k, v in nbytes.items()}
        print(
            f"# trie build {n:,} x {levels}: {seconds:.3f} s, "
            f"CSR {mb['csr']:.1f} MiB, dense masks {mb['dense_masks']:.1f} MiB"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12_101, help="catalog size (Beauty: 12,101)")
    parser.add_argument("--levels", type=int, default=3, help="SID length L")
    parser.add_argument("--codebook-size", type=int, default=256, help="K per level")
    parser.add_argument("--beam", type=int, default=20, help="beam width = top-k returned")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument(
        "--min-seconds", type=float, default=4.0, help="timed seconds per cell and mode"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating timings per cell (median)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
