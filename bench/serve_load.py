"""Load on the recommendation endpoint over loopback HTTP (issue 6).

    python bench/serve_load.py --model-uri models:/sidrec-tiger-beauty@bench \\
        --tracking-uri sqlite:////tmp/serve_bench/beauty/mlflow.db --root /tmp/serve_bench/beauty

Starts a local Ray + Serve in this process, deploys `serve_apps/recommender.py`
with one replica, and drives it with closed-loop clients (sidrec.serving.loadgen:
bounded concurrency, fixed duration, per-request timeout, so it always stops):

- batched (max_batch_size 32) at concurrency 1, 8, 32, 64: throughput, p50/p95/p99;
- unbatched (max_batch_size 1) at the same concurrencies (goal: batched >= 5x at 32);
- unconstrained decoding (trie mask off) at concurrency 32 (goal: constrained <= 1.3x
  the unconstrained cost);
- overload: 2x the replica's capacity (max_ongoing + max_queued) in clients:
  the answers past capacity must be 429 with Retry-After, nothing may hang, no
  other 5xx.

Requests are real Beauty test users: their last 20 history items (catalog ids),
k = 10. The load generator shares the machine with the replica: on a 2-core
box it takes a share of the CPU, which the figures include.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # serve_apps/


def request_bodies(root: Path, n: int, k: int) -> list[dict]:
    from sidrec.data import load_items, load_split

    ids = load_items(root).column("source_id").to_pylist()
    test = load_split(root, "test")
    rows = range(0, len(test), max(1, len(test) // n))
    return [{"history": [ids[i] for i in test.history(r)[-20:]], "k": k} for r in rows][:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(args, knobs: dict, max_queued: int) -> str:
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    app_args = AppArgs(
        model_uri=args.model_uri,
        tracking_uri=args.tracking_uri,
        num_cpus=1,
        torch_threads=args.threads,
        max_queued_requests=max_queued,
        knobs=knobs,
    )
    serve.run(build_app(app_args), name="bench", route_prefix="/bench")
    return f"http://127.0.0.1:{args.port}/bench/v1/recommend"


def measure(url: str, bodies, concurrency: int, duration: float) -> dict:
    from sidrec.serving.loadgen import run_load

    asyncio.run(run_load(url, bodies[:8], min(concurrency, 8), 1.0))  # warm up
    r = asyncio.run(run_load(url, bodies, concurrency, duration, timeout_s=60))
    return {
        "concurrency": concurrency,
        "rps": r.throughput,
        "p50": r.percentile(50),
        "p95": r.percentile(95),
        "p99": r.percentile(99),
        "statuses": {str(k): v for k, v in r.statuses.items()},
        "retry_after": sorted(r.retry_after),
        "server_errors": r.server_errors,
    }


def row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['concurrency']} | {m['rps']:.1f} | {m['p50']:.0f} | {m['p95']:.0f} "
        f"| {m['p99']:.0f} | {json.dumps(m['statuses'])} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--root", required=True, help="artifact root of the dataset (requests)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the replica")
    parser.add_argument("--requests", type=int, default=512, help="distinct request bodies")
    parser.add_argument("--max-queued", type=int, default=64)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    import ray
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    bodies = request_bodies(Path(args.root), args.requests, k=10)
    args.port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    results: dict[str, list[dict]] = {}
    table = []
    batched = {"max_batch_size": 32, "batch_wait_timeout_s": 0.01}
    scenarios = [
        ("batched (32)", batched, args.concurrency),
        ("unbatched (1)", {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}, args.concurrency),
        ("batched, trie mask off", {**batched, "constrained": False}, [32]),
    ]
    for name, knobs, levels in scenarios:
        url = deploy(args, knobs, args.max_queued)
        results[name] = [measure(url, bodies, c, args.duration) for c in levels]
        table += [row(name, m) for m in results[name]]
        print(table[-1], flush=True)
    # Overload: twice what one replica holds (max_ongoing 64 + max_queued).
    url = deploy(args, batched, args.max_queued)
    overload = 2 * (64 + args.max_queued)
    results["overload"] = [measure(url, bodies, overload, args.duration)]
    table.append(row(f"overload (2x capacity = {overload} clients)", results["overload"][0]))
    serve.shutdown()
    ray.shutdown()

    header = [
        f"serve_load: {args.model_uri}, 1 replica, torch threads {args.threads}, "
        f"{args.duration:.0f} s per row, {platform.node()} ({os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d')}",
        "",
        "| scenario | clients | answers/s | p50 ms | p95 ms | p99 ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(header + table))
    summary = summarize(results)
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in summary.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "summary": summary}, indent=1))


def summarize(results: dict[str, list[dict]]) -> dict[str, str]:
    def at(name, c):
        return next((m for m in results[name] if m["concurrency"] == c), None)

    out = {}
    b, u = at("batched (32)", 32), at("unbatched (1)", 32)
    if b and u:
        out["batched / unbatched throughput at 32 clients"] = (
            f"{b['rps'] / u['rps']:.1f}x (goal >= 5x)"
        )
    off = at("batched, trie mask off", 32)
    if b and off:
        out["constrained / unconstrained latency (p50) at 32 clients"] = (
            f"{b['p50'] / off['p50']:.2f}x (goal <= 1.3x)"
        )
    o = results["overload"][0]
    out["overload"] = (
        f"statuses {o['statuses']}, Retry-After {o['retry_after']}, other 5xx {o['server_errors']}"
    )
    return out


if __name__ == "__main__":
    main()
