"""Model FLOPs utilisation (MFU) of every trainable on this box (issue 15, part 2).

How to run (the figures for docs need a quiet box: load average < 0.3, nothing
else running; the run prints the load average before and after):

    PYTHONPATH=platform python bench/mfu.py --json /tmp/mfu.json
    PYTHONPATH=platform python bench/mfu.py --models sasrec,sidgpt --steps 60
    PYTHONPATH=platform python bench/mfu.py --full --json /tmp/mfu_full.json   # whole epochs
    PYTHONPATH=platform python bench/mfu.py --tiny --data-dir $SIDREC_DATA_DIR \\
        --artifact-root /tmp/mfu-tiny --models sasrec,rqvae        # seconds; what the test runs

Trainables (`--models`, default all): sasrec (SASRec-CE, sasrec_beauty), tiger
(tiger_cpu), sidgpt (sidgpt_beauty), sidgpt_d128 (sidgpt_beauty at d 128 x 4, FFN 512: the
d128 + cosine quality runs), h2rec (h2rec_beauty, CE), lmrec (lmrec_minilm,
phase 1: L_rip + L_align), lmrec_r128 (the same at LoRA 128) on the RQ-VAE SIDs;
rqvae (rqvae_tiger), hidvae (hidvae_beauty_tuned), lamia (lamia_minilm_small).
Batches and steps come from their train loops (bench/_mfu_loops.py).

Per trainable, the table gives:
- FLOPs per epoch, *counted* by torch.utils.flop_counter.FlopCounterMode over
  forward + backward of every timed step (steps with the same shapes counted
  once where the shapes fix the FLOPs). What it counts: matmuls, attention
  (SDPA counted in full, causal or not; the CPU flash kernel is added to
  torch's table, which lists the GPU ones only), convolutions; not the optimizer,
  embedding gathers or elementwise ops, as in the usual MFU definition.
  Without --full, the timed steps' FLOPs are scaled to the epoch by the loop's
  work units (positions, tokens or items; see `unit` in the JSON).
- seconds per epoch: `--steps` steps timed after `--warmup` untimed ones, on
  the epoch's batches in loop order, extrapolated by the same work units (an
  estimate; `--full` times the whole epoch). Training steps only: no evaluation.
- the box's fp32 GEMM peak: the best rate of a big `torch.mm` loop, measured in
  this process with the same threads, before and after the models; MFU uses
  the higher of the two, so a slow moment does not inflate MFU.
- MFU % = counted FLOPs of the timed steps / their seconds / peak.
- for full-softmax CE (SASRec, H2Rec) the logits head: the [T x N] fp32 logits
  are streamed ~9 times per step (forward: write, read + write log-softmax;
  backward: write + read + read + write the gradients, two GEMM reads), so the
  head is memory-bound when its FLOPs/byte is below the box's peak/bandwidth
  (a copy loop gives the bandwidth). Reported: the head alone timed at the
  epoch's mean batch shape (GB/s, GFLOP/s, its share of the step) and the
  whole loop's logits traffic per second (an estimate from the same model).

Threads: `--threads N` (default: torch's default, one per core).
`--tiny`: users 0..`--max-users` (default 300), 2 timed steps, small tokenizer
batches, a short peak; SIDs or embeddings missing from the artifact root are
replaced by random ones in a temp folder. For tests; not figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from _mfu_loops import LOOPS, Inputs, Loop  # bench/ is the script's folder
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from sidrec.data import ensure_ingested, load_items
from sidrec.data.sids import SidTable, disambiguate, write_sid_table
from sidrec.models.sasrec import full_softmax_loss

LOGIT_PASSES = 9  # fp32 passes over [T x N] per full-softmax CE step (module docstring)


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad, q, k, v)


# torch's counter knows the GPU attention kernels only; SDPA on CPU without
# dropout runs this one (with dropout it decomposes into bmm, which it counts).
CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--artifact-root", default=str(Path("~/sidrec-artifacts/beauty").expanduser()))
    p.add_argument("--data-dir", default=None, help="raw datasets, to ingest a missing root")
    p.add_argument("--models", default=",".join(LOOPS), help=f"comma list of {list(LOOPS)}")
    p.add_argument("--sids", default=None, help="default: <root>/sids/rqvae.parquet")
    p.add_argument("--embeddings", default=None, help="default: <root>/embeddings/*.parquet")
    p.add_argument("--threads", type=int, default=None, help="default: torch's (= cores)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30; --tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3; --tiny 1)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop timing a model after")
    p.add_argument("--full", action="store_true", help="time whole epochs")
    p.add_argument("--max-users", type=int, default=None, help="recommenders: first N users")
    p.add_argument("--tiny", action="store_true", help="seconds-long run for tests")
    p.add_argument("--json", default=None, help="write the results here (atomically)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(LOOPS))
    if unknown:
        p.error(f"--models: unknown {unknown}; known: {list(LOOPS)}")
    if args.tiny:
        args.max_users = args.max_users or 300
    args.steps = args.steps or (2 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    return args


# -- the box ---------------------------------------------------------------------


def gemm_peak(n: int, seconds: float) -> float:
    """Best fp32 FLOP/s of [n x n] @ [n x n] over 3 rounds of `seconds / 3`."""
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=out)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, seconds)


def copy_bandwidth(mib: int, seconds: float) -> float:
    """Best bytes/s of copying a `mib` MiB fp32 buffer (one read + one write)."""
    x = torch.ones(mib * 2**20 // 4)
    y = torch.empty_like(x)
    y.copy_(x)
    return _best_rate(lambda: y.copy_(x), 2.0 * x.numel() * 4, seconds)


def _best_rate(fn, work: float, seconds: float, rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        reps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / rounds or reps == 0:
            fn()
            reps += 1
        best = max(best, work * reps / elapsed)
    return best


# -- inputs ----------------------------------------------------------------------


def resolve_inputs(args: argparse.Namespace, scratch: Path) -> Inputs:
    """The artifact paths; with --tiny, random SIDs / embeddings where they are missing."""
    root = Path(args.artifact_root)
    if not (root / "splits" / "manifest.json").is_file():  # never re-ingest a root in use
        ensure_ingested("beauty", root, data_dir=args.data_dir, track=False)
    n = load_items(root).num_rows
    sids = Path(args.sids) if args.sids else root / "sids" / "rqvae.parquet"
    found = sorted((root / "embeddings").glob("*.parquet"))
    embeddings = Path(args.embeddings) if args.embeddings else (found[0] if found else None)
    if not sids.is_file():
        if not args.tiny:
            sys.exit(f"{sids}: SID table not found (jobs/train_rqvae.py), or pass --sids")
        sids = random_sids(n, scratch / "sids.parquet")
    if embeddings is None or not embeddings.is_file():
        if not args.tiny:
            sys.exit(f"{root / 'embeddings'}: no embeddings (jobs/embed_catalog.py)")
        embeddings = random_embeddings(n, scratch / "embeddings.parquet")
    return Inputs(str(root), str(sids), str(embeddings), args.max_users, args.tiny)


def random_sids(num_items: int, path: Path) -> Path:
    codes = np.random.default_rng(0).integers(0, 256, (num_items, 3))
    write_sid_table(path, SidTable(codes, disambiguate(codes), [256] * 3), {"learner": "random"})
    return path


def random_embeddings(num_items: int, path: Path, dim: int = 384) -> Path:
    x = np.random.default_rng(0).standard_normal((num_items, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table(
        {
            "item_id": pa.array(np.arange(num_items, dtype=np.int32)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        }
    )
    pq.write_table(table, path)
    return path


# -- one trainable -----------------------------------------------------------------


def measure(loop: Loop, args: argparse.Namespace) -> dict:
    """Time the steps, then count their FLOPs (separately: counting slows a step)."""
    batches = loop.batches
    for i in range(args.warmup):
        loop.run(batches[i % len(batches)])
    # Timed steps continue the epoch where the warm-up stopped (cycling if short).
    steps = range(args.warmup, args.warmup + args.steps)
    timed = batches if args.full else [batches[i % len(batches)] for i in steps]
    done, start = 0, time.perf_counter()
    for batch in timed:
        loop.run(batch)
        done += 1
        if not args.full and time.perf_counter() - start > args.max_seconds and done >= 3:
            break
    seconds = time.perf_counter() - start
    timed = timed[:done]
    flops = count_flops(loop, timed)
    work_timed = sum(loop.work(b) for b in timed)
    work_epoch = sum(loop.work(b) for b in batches)
    scale = work_epoch / work_timed
    return {
        "model": loop.label,
        "config": loop.config,
        "unit": loop.unit,
        "steps_timed": done,
        "steps_per_epoch": len(batches),
        "work_per_epoch": work_epoch,
        "timed_seconds": seconds,
        "s_per_epoch": seconds * scale,
        "epoch_timed": bool(args.full),
        "flops_timed": flops,
        "flops_per_epoch": flops * scale,
        "achieved_flops_per_s": flops / seconds,
    }


def count_flops(loop: Loop, batches: list) -> float:
    """FlopCounterMode over each step (forward + backward); cached by shape key."""
    cache: dict = {}
    total = 0.0
    for batch in batches:
        key = loop.key(batch) if loop.key is not None else None
        if key is None or key not in cache:
            counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
            with counter:
                loop.run(batch)
            flops = float(counter.get_total_flops())
            if key is not None:
                cache[key] = flops
        total += cache[key] if key is not None else flops
    return total


def logits_head(loop: Loop, row: dict, peak: float, bandwidth: float, seconds: float) -> dict:
    """The full-softmax CE head alone at the epoch's mean positions per step."""
    d, n = loop.logits["d"], loop.logits["n"]
    t = max(1, round(row["work_per_epoch"] / row["steps_per_epoch"]))
    h = torch.randn(t, d, requires_grad=True)
    w = torch.randn(n, d, requires_grad=True)
    targets = torch.randint(n, (t,))

    def step():
        full_softmax_loss(h, targets, w).backward()
        h.grad = w.grad = None

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = float(counter.get_total_flops())
    rate = _best_rate(step, 1.0, seconds)  # steps per second
    head_bytes = LOGIT_PASSES * 4.0 * t * n
    step_s = row["s_per_epoch"] / row["steps_per_epoch"]
    epoch_bytes = LOGIT_PASSES * 4.0 * row["work_per_epoch"] * n
    return {
        "positions": t,
        "head_ms": 1000 / rate,
        "head_share_of_step": (1 / rate) / step_s,
        "head_gflops": flops * rate / 1e9,
        "head_gbps": head_bytes * rate / 1e9,
        "flops_per_byte": flops / head_bytes,
        "box_flops_per_byte": peak / bandwidth,
        "memory_bound": flops / head_bytes < peak / bandwidth,
        "loop_logits_gbps": epoch_bytes / row["s_per_epoch"] / 1e9,
    }


# -- report ----------------------------------------------------------------------


def table(rows: list[dict], peak: float, bandwidth: float) -> str:
    head = (
        f"{'model':<11} {'config':<34} {'steps':>5} {'s/epoch':>8} {'GFLOP/epoch':>12} "
        f"{'GFLOP/s':>8} {'peak':>7} {'MFU %':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<11} {r['config']:<34} {r['steps_timed']:>5} {r['s_per_epoch']:>8.2f} "
            f"{r['flops_per_epoch'] / 1e9:>12.1f} {r['achieved_flops_per_s'] / 1e9:>8.1f} "
            f"{peak / 1e9:>7.1f} {r['mfu_percent']:>6.2f}"
        )
    for r in rows:
        if "logits" in r:
            g = r["logits"]
            lines.append(
                f"{r['model']}: CE logits [{g['positions']} x N] {g['head_ms']:.1f} ms/step "
                f"({100 * g['head_share_of_step']:.0f}% of a step), {g['head_gbps']:.1f} GB/s, "
                f"{g['head_gflops']:.1f} GFLOP/s, {g['flops_per_byte']:.1f} FLOP/B vs box "
                f"{g['box_flops_per_byte']:.1f} -> "
                f"{'memory' if g['memory_bound'] else 'compute'}-bound; whole loop "
                f"~{g['loop_logits_gbps']:.1f} GB/s of logits traffic "
                f"(copy bandwidth {bandwidth / 1e9:.1f} GB/s)"
            )
    return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
    """Temp file then rename: a reader never sees half a file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    gemm_n, peak_s = (1024, 0.6) if args.tiny else (2048, 3.0)
    peaks = [gemm_peak(gemm_n, peak_s)]
    bandwidth = copy_bandwidth(64 if args.tiny else 512, peak_s)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfu-") as scratch:
        inputs = resolve_inputs(args, Path(scratch))
        loops = []
        for name in args.models.split(","):
            began = time.perf_counter()
            loop = LOOPS[name](inputs)
            row = measure(loop, args)
            row["setup_and_measure_s"] = time.perf_counter() - began
            rows.append(row)
            loops.append(loop)
            print(f"{name}: {row['s_per_epoch']:.2f} s/epoch, "
                  f"{row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)  # fmt: skip
    peaks.append(gemm_peak(gemm_n, peak_s))
    peak = max(peaks)
    for loop, row in zip(loops, rows, strict=True):
        row["mfu_percent"] = 100 * row["achieved_flops_per_s"] / peak
        if loop.logits:
            row["logits"] = logits_head(loop, row, peak, bandwidth, 0.3 if args.tiny else 2.0)
    load_after = os.getloadavg()
    print(table(rows, peak, bandwidth))
    print(
        f"threads {torch.get_num_threads()}; fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s "
        f"(n={gemm_n}; before {peaks[0] / 1e9:.1f}, after {peaks[1] / 1e9:.1f}); "
        f"copy {bandwidth / 1e9:.1f} GB/s; "
        f"{'whole epochs timed' if args.full else 'epochs extrapolated from timed steps'}"
    )
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    payload = {
        "command": " ".join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "artifact_root": inputs.root,
        "sids": inputs.sids,
        "max_users": args.max_users,
        "tiny": args.tiny,
        "gemm_n": gemm_n,
        "gemm_peak_flops_per_s": peak,
        "gemm_peak_before_after": peaks,
        "copy_bytes_per_s": bandwidth,
        "load_before": list(load_before),
        "load_after": list(load_after),
        "rows": rows,
    }
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
