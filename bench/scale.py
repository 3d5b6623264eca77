"""Every stage of the pipeline at N items: wall time and peak RSS of all its processes.

    python bench/scale.py --sizes 100000                       # ~2 min on 2 cores
    python bench/scale.py --sizes 100000 1000000 10000000 --json scale.json --csv scale.csv
    python bench/scale.py --sizes 1000000 --stages decode sid_trie   # reuse earlier artifacts

A seeded synthetic catalog (`sidrec.data.synthetic`: Zipf popularity,
latent-topic interactions, ~10 per item) is generated at each N under
--root/n<N>/, then each stage runs in its own process (`scale.py --stage`),
so the peak RSS sampled over that process and its descendants (Ray's GCS,
raylet and workers included; shared pages count once per process that maps
them, so it is an upper bound) is the stage's own:

  generate      synthetic catalog + leave-one-out splits, streamed to Parquet
  read_splits   what a trainer loads first: the test split and training sequences
  embed_hashed  Ray Data: items -> hashed bag-of-words actors (64-d) -> Parquet, in order
  embed_minilm  MiniLM through the same pipeline on --minilm-items items: items/s, extrapolated
  rqkmeans      3 x 256 residual k-means (sample of 256 x K per level, all N assigned)
  rqvae         RQ-VAE s/step -> s/epoch; collision rate after --rqvae-steps steps
  sid_trie      SID table + disambiguation level, SidTrie bytes/item and build seconds
  decode        constrained beam search, beam 20, batch 1 and 32, same random decoder
  bundle        SID-GPT bundle saved, loaded in a fresh process, one request answered
  serve         that bundle behind Ray Serve: seconds to the first answer, p50 / p99 at 8 clients
  eval          full-catalog evaluation, batch sized to --eval-mem-mib; users/s

A stage whose estimated memory exceeds --mem-budget-gib is skipped and the
table says so; a stage that fails or times out says why, and the summary gives
the largest N each stage ran at. Figures: docs/SCALE.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
from _scale_stages import STAGES, estimate_bytes  # bench/ is the script's folder

NEEDS = {
    "read_splits": "generate",
    "embed_hashed": "generate",
    "embed_minilm": "generate",
    "rqkmeans": "embed_hashed",
    "rqvae": "embed_hashed",
    "sid_trie": "rqkmeans",
    "decode": "rqkmeans",
    "bundle": "rqkmeans",
    "serve": "bundle",
    "eval": "generate",
}


class TreePeak:
    """Peak of the summed RSS of a process and all its descendants, sampled every 50 ms."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.root, self.interval, self.peak = psutil.Process(pid), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass  # exited between listing and reading
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_stage(stage: str, n: int, args: argparse.Namespace) -> dict:
    """Spawn `scale.py --stage` for (stage, n); its status, seconds, peak RSS and figures."""
    folder = Path(args.root) / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"result-{stage}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--stage", stage, "--n", str(n), *passthrough(args)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = TreePeak(proc.pid)
    try:
        log, _ = proc.communicate(timeout=args.stage_timeout)
        status = "ok" if proc.returncode == 0 and out.is_file() else "failed"
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        log, status = proc.communicate()[0], f"timed out after {args.stage_timeout} s"
    wall = time.perf_counter() - start
    row = {
        "stage": stage,
        "n": n,
        "status": status,
        "wall_s": wall,
        "peak_rss_mib": peak.stop() / 2**20,
    }
    if status == "ok":
        row["figures"] = json.loads(out.read_text())
    elif status == "failed":
        lines = [line for line in (log or "").splitlines() if line.strip()]
        row["status"] = "failed: " + (lines[-1][:200] if lines else f"exit {proc.returncode}")
    return row


def passthrough(args: argparse.Namespace) -> list[str]:
    flags = ["root", "users_per_item", "chunk_users", "minilm_items", "rqvae_steps",
             "decode_reps", "eval_seconds", "eval_mem_mib", "threads", "serve_seconds"]  # fmt: skip
    return [x for f in flags for x in (f"--{f.replace('_', '-')}", str(getattr(args, f)))]


def child(args: argparse.Namespace) -> None:
    """--stage mode: run one stage in this process and write its figures."""
    import torch

    # 1 by default: on 2 shared cores torch's 2-thread OpenMP fan-out made an
    # RQ-VAE step 8x slower under load (0.86 s vs 0.10 s); a quiet box may use 2.
    torch.set_num_threads(args.threads)
    folder = Path(args.root) / f"n{args.n}"
    figures = STAGES[args.stage](folder, args.n, args)
    (folder / f"result-{args.stage}.json").write_text(json.dumps(figures, default=float))


def main(args: argparse.Namespace) -> None:
    unknown = sorted(set(args.stages or ()) - set(STAGES))
    if unknown:
        raise SystemExit(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    stages = [s for s in STAGES if args.stages is None or s in args.stages]  # pipeline order
    budget = args.mem_budget_gib * 2**30
    print(f"# {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"# {machine()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# load average before: {load_average()}")
    rows = []
    for n in args.sizes:
        done: dict[str, str] = {}
        for stage in stages:
            need = NEEDS.get(stage)
            if need in stages and done.get(need) != "ok":
                row = {
                    "stage": stage,
                    "n": n,
                    "status": f"skipped: needs {need}, which did not run",
                }
            elif estimate_bytes(stage, n, args) > budget:
                gib = estimate_bytes(stage, n, args) / 2**30
                row = {"stage": stage, "n": n,
                       "status": f"skipped: needs ~{gib:.0f} GiB > --mem-budget-gib {args.mem_budget_gib}"}  # fmt: skip
            else:
                row = run_stage(stage, n, args)
            done[stage] = row["status"]
            rows.append(row)
            print(format_row(row), flush=True)
    print(f"# load average after: {load_average()}")
    print()
    print(table(rows))
    print()
    for stage in stages:
        ran = [r["n"] for r in rows if r["stage"] == stage and r["status"] == "ok"]
        print(f"# {stage}: largest N that ran: {max(ran):,}" if ran else f"# {stage}: did not run")
    meta = {
        "command": sys.argv,
        "machine": machine(),
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
    }
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "rows": rows}, indent=2, default=float)
        )
    if args.csv:
        write_csv(Path(args.csv), rows)


def format_row(row: dict) -> str:
    figures = row.get("figures", {})
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    wall = f"{row['wall_s']:.1f} s" if "wall_s" in row else "-"
    rss = f"{row['peak_rss_mib']:,.0f} MiB" if "peak_rss_mib" in row else "-"
    return f"| {row['stage']} | {row['n']:,} | {row['status']} | {wall} | {rss} | {text} |"


def table(rows: list[dict]) -> str:
    head = "| stage | N | status | wall (process) | peak RSS (tree) | figures |\n|---|---:|---|---:|---:|---|"
    return "\n".join([head, *(format_row(r) for r in rows)])


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r.get("figures", {})})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "n", "status", "wall_s", "peak_rss_mib", *keys])
        for r in rows:
            figures = r.get("figures", {})
            writer.writerow(
                [r["stage"], r["n"], r["status"], r.get("wall_s", ""), r.get("peak_rss_mib", ""),
                 *(json.dumps(figures[k]) if isinstance(figures.get(k), list) else figures.get(k, "")
                   for k in keys)]
            )  # fmt: skip


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace(" ", "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, {platform.system()}"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--stages", nargs="+", default=None, help=f"subset of {list(STAGES)}")
    parser.add_argument(
        "--root", default="/tmp/sidrec-scale", help="where catalogs and artifacts go"
    )
    parser.add_argument(
        "--mem-budget-gib", type=float, default=20.0, help="skip stages estimated above it"
    )
    parser.add_argument(
        "--stage-timeout", type=int, default=3600, help="seconds before a stage is killed"
    )
    parser.add_argument("--users-per-item", type=float, default=1.0, help="~10 interactions a user")
    parser.add_argument(
        "--chunk-users", type=int, default=65_536, help="generator's users per write"
    )
    parser.add_argument(
        "--minilm-items", type=int, default=1024, help="items MiniLM embeds (rate only)"
    )
    parser.add_argument("--rqvae-steps", type=int, default=20, help="timed RQ-VAE steps")
    parser.add_argument("--decode-reps", type=int, default=20, help="timed batch-1 decodes")
    parser.add_argument("--serve-seconds", type=float, default=8.0, help="load per serve run")
    parser.add_argument("--eval-seconds", type=float, default=20.0, help="time box of eval (rate)")
    parser.add_argument("--eval-mem-mib", type=int, default=256, help="[b x N] budget of eval")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each stage")
    parser.add_argument("--json", default=None, help="write all rows and figures here")
    parser.add_argument("--csv", default=None, help="write one CSV row per (stage, N) here")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parsed = parse_args()
    child(parsed) if parsed.stage else main(parsed)
