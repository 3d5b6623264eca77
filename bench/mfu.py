"""Model FLOPs utilization of every training loop on this CPU (issue 15).

    SIDREC_DATA_DIR=../shared/data python bench/mfu.py --artifact-root ~/sidrec-artifacts/beauty \
        --json mfu.json          # the full figures: every trainable, one epoch's batches each
    python bench/mfu.py --artifact-root ROOT --tiny  # seconds: a few steps of tiny models (tests)

For each trainable it builds the model the job builds (SASRec-CE `sasrec_beauty`,
TIGER `tiger_cpu` and SID-GPT `sidgpt_beauty` on `sids/rqvae.parquet`, H2Rec
`h2rec_beauty`, the RQ-VAE `rqvae_tiger()` and HiD-VAE `hidvae_beauty_tuned()`
tokenizers on the catalog's embeddings) and runs its training steps (forward,
backward, AdamW step) over the batches of one epoch, laid out as the train loop
lays them out (length-bucketed, padding-free; TIGER: every training prefix).

- FLOPs: counted by `torch.utils.flop_counter.FlopCounterMode` over the same
  steps (matmuls, attention and convolutions, forward and backward; the
  optimizer and elementwise work are not counted, as MFU conventionally does).
- Seconds: the same steps timed without the counter, after `--warmup` steps.
  With `--max-steps S` only the first S batches of the epoch run, and the epoch
  figures are scaled by the epoch's examples over those S batches' examples.
- Peak: a 2048 x 2048 fp32 `torch.mm` loop, measured in the same run with the
  same threads (on this CPU bf16 is slower than fp32: no AMX).
- MFU = counted FLOPs / seconds / peak. A loop dominated by the full-catalog
  softmax (SASRec-CE: [tokens x 12,101] logits) is memory-bound: its row also
  gives the bytes those logits move (written, read by the softmax, written and
  read again in backward: ~4 passes of 4 bytes) per second.

LAMIA's palette tokenizer is not measured here: its epoch is a sequence of
tasks (`sidrec.tokenizers.lamia.tasks`) with no single step to time; its cost is
in docs/RESULTS_lamia.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sidrec.data.catalog import load_items, load_split, train_sequences
from sidrec.data.sids import read_sid_table
from sidrec.models._data import length_buckets, sequence_rows, split_rows

Batch = tuple[tuple[torch.Tensor, ...], int]  # (model inputs, examples in the batch)


def gemm_peak(seconds: float = 2.0, n: int = 2048) -> float:
    """fp32 GFLOP/s of a square matmul loop with this process's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


# ---- the trainables: (model, batches of one epoch) --------------------------------


def _sequence_batches(root: Path, max_len: int, batch: int, users: int | None) -> list[Batch]:
    rows = sequence_rows(train_sequences(root), max_len, users)
    seq = torch.as_tensor(rows.history)
    out = []
    for idx in length_buckets(rows.lengths, batch, np.random.default_rng(0)):
        x = seq[torch.as_tensor(idx), -int(rows.lengths[idx[0]]) :]
        out.append(((x[:, :-1], x[:, 1:]), int((x[:, 1:] >= 0).sum())))
    return out


def _prefix_batches(root: Path, max_history: int, batch: int, users: int | None) -> list[Batch]:
    from sidrec.models._data import first_users

    rows = split_rows(first_users(load_split(root, "train"), users), max_history)
    hist, usr, tgt = (torch.as_tensor(a) for a in (rows.history, rows.users, rows.targets))
    out = []
    for idx in length_buckets(rows.lengths, batch, np.random.default_rng(0)):
        i = torch.as_tensor(idx)
        out.append(((hist[i, -int(rows.lengths[idx[0]]) :], usr[i], tgt[i]), len(idx)))
    return out


def _item_batches(x: torch.Tensor, batch: int, *extra: torch.Tensor) -> list[Batch]:
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    return [
        ((x[i], *(e[i] for e in extra)), len(i))
        for i in (order[s : s + batch] for s in range(0, len(order), batch))
    ]


# Inputs other than the catalog and splits: set from the command line in main().
INPUTS: dict[str, Path | None] = {"sids": None, "embeddings": None}


def _sid_table(root: Path, num_items: int):
    path = INPUTS["sids"] or root / "sids" / "rqvae.parquet"
    return read_sid_table(path, num_items=num_items)


def _embeddings(root: Path, tiny: bool) -> torch.Tensor:
    """The catalog's item embeddings; --tiny without any: random ones (the values do
    not change the cost)."""
    from sidrec.data.embeddings import load_embeddings

    found = sorted((root / "embeddings").glob("*.parquet"))
    path = INPUTS["embeddings"] or (found[0] if found else None)
    if path is None:
        if not tiny:
            raise FileNotFoundError(f"{root / 'embeddings'}: no embeddings (jobs/embed_catalog.py)")
        n = load_items(root).num_rows
        return torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
    return torch.as_tensor(load_embeddings(path), dtype=torch.float32)


def build(name: str, root: Path, tiny: bool, users: int | None):
    """(model, batches, loss_of(model, inputs), logits_bytes_per_example or 0)."""
    n = load_items(root).num_rows
    if name == "sasrec_ce":
        from sidrec.models.sasrec import sasrec, sasrec_beauty

        model = (
            sasrec(
                n,
                d_model=16,
                num_layers=1,
                num_heads=1,
                ffn_dim=16,
                dropout=0.5,
                max_len=20,
                loss="ce",
            )
            if tiny
            else sasrec_beauty(n, loss="ce")
        )
        batches = _sequence_batches(root, model.cfg.max_len, 256, users)
        return model, batches, lambda m, b: m(*b), 4 * 4 * n  # fp32 logits, ~4 passes
    if name == "sidgpt":
        from sidrec.models.sidgpt import sidgpt, sidgpt_beauty

        t = _sid_table(root, n)
        args = (t.full_codes(), t.full_codebook_sizes())
        model = (
            sidgpt(
                *args, d_model=16, num_layers=1, num_heads=1, ffn_dim=16, dropout=0.5, max_len=20
            )
            if tiny
            else sidgpt_beauty(*args)
        )
        return model, _sequence_batches(root, model.cfg.max_len, 256, users), lambda m, b: m(*b), 0
    if name == "h2rec":
        from sidrec.models.h2rec import h2rec, h2rec_beauty

        t = _sid_table(root, n)
        model = (
            h2rec(
                t.codes,
                t.codebook_sizes,
                d_model=16,
                num_layers=1,
                num_heads=1,
                ffn_dim=16,
                dropout=0.5,
                max_len=20,
            )
            if tiny
            else h2rec_beauty(t.codes, t.codebook_sizes)
        )
        batches = _sequence_batches(root, model.cfg.max_len, 256, users)
        return model, batches, lambda m, b: m(*b), 4 * 4 * n
    if name == "tiger":
        from sidrec.models.tiger import tiger, tiger_cpu

        t = _sid_table(root, n)
        args = (t.full_codes(), t.full_codebook_sizes())
        model = (
            tiger(
                *args,
                num_encoder_layers=1,
                num_decoder_layers=1,
                d_model=16,
                num_heads=1,
                head_dim=16,
                ffn_dim=16,
                dropout=0.1,
                num_user_tokens=10,
                max_history=20,
                hierarchy_aware=False,
            )
            if tiny
            else tiger_cpu(*args)
        )
        # TIGER_RECIPE's batch (1024 prefixes)
        return (
            model,
            _prefix_batches(root, model.cfg.max_history, 1024, users),
            lambda m, b: m(*b),
            0,
        )
    if name in ("rqvae", "hidvae"):
        return _tokenizer(name, root, tiny)
    raise ValueError(f"unknown trainable {name!r}; known: {TRAINABLES}")


def _tokenizer(name: str, root: Path, tiny: bool):
    from dataclasses import replace

    from sidrec.tokenizers.hidvae import hidvae_beauty_tuned
    from sidrec.tokenizers.rqvae import rqvae_tiger

    x = _embeddings(root, tiny)
    cfg = rqvae_tiger() if name == "rqvae" else hidvae_beauty_tuned()
    if tiny:
        cfg = replace(cfg, hidden_dims=(32,), codebook_size=8, kmeans_iters=2)
    tag_sizes = [8, 8, 8] if name == "hidvae" else None
    model = cfg.build(x.shape[1], tag_sizes) if tag_sizes else cfg.build(x.shape[1])
    if name == "hidvae":  # tag ids do not change the FLOPs: a fixed draw
        tags = torch.randint(8, (x.shape[0], 3), generator=torch.Generator().manual_seed(0))
        batches = _item_batches(x, cfg.batch_size, tags)
    else:
        batches = _item_batches(x, cfg.batch_size)
    return model, batches, lambda m, b: m(*b)["loss"], 0


TRAINABLES = ("sasrec_ce", "tiger", "sidgpt", "h2rec", "rqvae", "hidvae")


# ---- measuring ---------------------------------------------------------------------


def _steps(model, batches: list[Batch], loss_of: Callable) -> Iterator[None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for inputs, _ in batches:
        loss = loss_of(model, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield


def measure(name: str, root: Path, args) -> dict:
    torch.manual_seed(0)
    model, batches, loss_of, logit_bytes = build(name, root, args.tiny, args.max_users)
    epoch_examples = sum(e for _, e in batches)
    for _ in zip(range(args.warmup), _steps(model, batches, loss_of), strict=False):
        pass  # warm-up: allocator, k-means codebook init of the tokenizers
    run = batches[: args.max_steps] if args.max_steps else batches
    examples = sum(e for _, e in run)
    with FlopCounterMode(display=False) as counter:
        for _ in _steps(model, run, loss_of):
            pass
    flops = counter.get_total_flops()
    t0 = time.perf_counter()
    for _ in _steps(model, run, loss_of):
        pass
    seconds = time.perf_counter() - t0
    scale = epoch_examples / max(examples, 1)
    out = {
        "model": name,
        "steps": len(run),
        "epoch_steps": len(batches),
        "flops_per_epoch": flops * scale,
        "seconds_per_epoch": seconds * scale,
        "gflops": flops / seconds / 1e9,
    }
    if logit_bytes:
        out["logits_gb_per_s"] = examples * logit_bytes / seconds / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--artifact-root", type=Path, default=Path.home() / "sidrec-artifacts" / "beauty"
    )
    parser.add_argument("--models", nargs="+", default=list(TRAINABLES), choices=TRAINABLES)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's (= cores)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the whole epoch")
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="tiny models (tests)")
    parser.add_argument(
        "--sids", type=Path, default=None, help="default: <root>/sids/rqvae.parquet"
    )
    parser.add_argument("--embeddings", type=Path, default=None, help="default: <root>/embeddings/")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    INPUTS.update(sids=args.sids, embeddings=args.embeddings)
    load_before = os.getloadavg()[0]
    peak = gemm_peak(0.5 if args.tiny else 3.0)
    rows = []
    for name in args.models:
        row = measure(name, args.artifact_root, args)
        row["mfu_percent"] = 100 * row["gflops"] / peak
        rows.append(row)
    print(
        f"threads {torch.get_num_threads()}, fp32 GEMM peak {peak:.0f} GFLOP/s, "
        f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print("| trainable | GFLOP / epoch (counted) | s / epoch | GFLOP/s | MFU % | logits GB/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        gbs = f"{r['logits_gb_per_s']:.1f}" if "logits_gb_per_s" in r else ""
        print(
            f"| {r['model']} | {r['flops_per_epoch'] / 1e9:,.0f} | {r['seconds_per_epoch']:.1f} "
            f"| {r['gflops']:.1f} | {r['mfu_percent']:.1f} | {gbs} |"
        )
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"peak_gflops": peak, "threads": torch.get_num_threads(), "rows": rows}, indent=2
            )
        )
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
