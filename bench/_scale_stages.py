"""The stages of bench/scale.py, one function each: (folder, N, args) -> figures.

Each runs in its own process (bench/scale.py spawns `scale.py --stage NAME`),
so the peak RSS its parent samples over the process tree is that stage's
alone, Ray's processes included. A stage reads what earlier stages left in
its folder (catalog, embeddings, codes) and returns a dict of figures; it
never needs a GPU. Where a stage would not fit, `estimate_bytes` says so
before it starts (bench/scale.py then skips it and says why).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from sidrec.data import load_split
from sidrec.data.synthetic import SyntheticConfig, generate

EMBED_TAG = "hashed-bow-64"
LEVELS, K = 3, 256


def _paths(folder: Path) -> dict[str, Path]:
    return {
        "items": folder / "catalog" / "items.parquet",
        "embeddings": folder / "embeddings" / f"{EMBED_TAG}.parquet",
        "codes": folder / "rqkmeans_codes.npy",
        "bundle": folder / "bundle",
    }


def estimate_bytes(stage: str, n: int, args: argparse.Namespace) -> int:
    """Rough peak memory of a stage at n items (what decides a skip, not a figure)."""
    users = n * args.users_per_item
    per = {
        "generate": 40 * n + 2_000 * args.chunk_users,
        "read_splits": 60 * users * 10,  # the readers load whole tables: ~10 interactions a user
        "embed_hashed": 2 << 30,  # flat in n: Ray + one window of batches
        "embed_minilm": 3 << 30,
        "rqkmeans": 4 * 64 * n * 3 + (1 << 30),  # x, residual, a chunk of distances
        "rqvae": 4 * 64 * n * 3 + (1 << 30),
        "sid_trie": 80 * n,  # int64 codes + sort keys while building
        "decode": 40 * n + (1 << 30),
        "bundle": 200 * n + (1 << 30),  # weights (item_codes), tries, titles, 2 processes
        "serve": 150 * n + (3 << 30),  # Ray + Serve + one replica holding the bundle
        "eval": 20 * users + args.eval_mem_mib * (1 << 20),
    }
    return int(per[stage])


# ---- stages ---------------------------------------------------------------------------------


def generate_stage(folder: Path, n: int, args) -> dict:
    cfg = SyntheticConfig(
        num_items=n,
        artifact_root=str(folder),
        seed=0,
        users_per_item=args.users_per_item,
        chunk_users=args.chunk_users,
    )
    start = time.perf_counter()
    manifest = generate(cfg, force=True)
    seconds = time.perf_counter() - start
    counts = manifest["counts"]
    size = sum(
        p.stat().st_size for sub in ("catalog", "splits") for p in (folder / sub).glob("*.parquet")
    )
    return {
        "seconds": seconds,
        "users": counts["users"],
        "interactions": counts["interactions"],
        "train_rows": counts["splits"]["train"],
        "parquet_mib": size / 2**20,
        "items_per_s": n / seconds,
    }


def read_splits_stage(folder: Path, n: int, args) -> dict:
    """What every trainer does first: load a split and the training sequences."""
    from sidrec.data import train_sequences

    start = time.perf_counter()
    test = load_split(folder, "test")
    seqs = train_sequences(folder)
    return {"seconds": time.perf_counter() - start, "users": len(test), "seqs": len(seqs.items)}


def embed_hashed_stage(folder: Path, n: int, args) -> dict:
    """Ray Data: items.parquet -> hashed BoW actors -> embeddings written in order."""
    from sidrec.distributed import init_ray
    from sidrec.embed import EmbedConfig, hashed_bow_encoder
    from sidrec.embed.ray_embed import stream_to_parquet

    init_ray(num_cpus=2)
    _quiet_ray_data()
    paths = _paths(folder)
    paths["embeddings"].parent.mkdir(exist_ok=True)
    cfg = EmbedConfig(encoder=hashed_bow_encoder(dim=64), rows_per_call=8192)
    out = stream_to_parquet(paths["items"], cfg, paths["embeddings"], num_items=n)
    return {
        "seconds": out.seconds,
        "first_batch_s": out.first_batch_seconds,  # pool start-up + batch 0 (in-order)
        "items_per_s": n / out.seconds,  # start-up included: compare across N for the slope
    }


def embed_minilm_stage(folder: Path, n: int, args) -> dict:
    """MiniLM through the same pipeline on the first --minilm-items items; items/s
    and the time the whole catalog would take at that rate (2 actors here)."""
    from sidrec.distributed import init_ray
    from sidrec.embed import EmbedConfig, minilm_l6_v2
    from sidrec.embed.ray_embed import stream_to_parquet

    init_ray(num_cpus=2)
    _quiet_ray_data()
    sample = min(n, args.minilm_items)
    part = folder / "minilm_sample" / "items.parquet"
    part.parent.mkdir(exist_ok=True)
    pq.write_table(pq.read_table(_paths(folder)["items"]).slice(0, sample), part)
    cfg = EmbedConfig(encoder=minilm_l6_v2(), rows_per_call=128)
    out = stream_to_parquet(part, cfg, part.parent / "minilm.parquet", num_items=sample)
    rate = out.steady_rows_per_s  # after the first batch: both actors loaded and busy
    return {
        "seconds": out.seconds,
        "first_batch_s": out.first_batch_seconds,
        "sample": sample,
        "items_per_s": rate,
        "full_catalog_h": n / rate / 3600,
    }


def rqkmeans_stage(folder: Path, n: int, args) -> dict:
    """RQ-KMeans at N vectors: each level's k-means on a sample of 256 x K residuals
    (faiss's own default cap), then every item assigned (`nearest`, in chunks)."""
    from sidrec.eval.sids import collision_rate
    from sidrec.tokenizers.kmeans import available_backends, kmeans, nearest

    x = _load_embeddings(_paths(folder)["embeddings"])
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    residual, codes = x, np.zeros((n, LEVELS), dtype=np.int64)
    for level in range(LEVELS):
        sample = residual[rng.choice(n, size=min(n, 256 * K), replace=False)]
        books = kmeans(sample, K, iters=25, seed=level, backend="auto")
        codes[:, level] = nearest(residual, books)  # 256k rows at a time
        residual = residual - books[codes[:, level]]
    seconds = time.perf_counter() - start
    np.save(_paths(folder)["codes"], codes)
    return {
        "seconds": seconds,
        "kmeans": available_backends()[0],
        "collision_rate": collision_rate(codes),
    }


def rqvae_stage(folder: Path, n: int, args) -> dict:
    """RQ-VAE (TIGER's shape on 64-d input): s/step at batch 1024 -> s/epoch, and the
    collision rate of its codes after --rqvae-steps steps (not a trained tokenizer)."""
    from sidrec.eval.sids import collision_rate
    from sidrec.tokenizers.rqvae import rqvae_tiger

    torch.manual_seed(0)
    x = torch.from_numpy(_load_embeddings(_paths(folder)["embeddings"]))
    cfg = rqvae_tiger()
    model = cfg.build(input_dim=x.shape[1])
    rng = np.random.default_rng(0)
    model.init_codebooks(x[rng.choice(n, size=min(n, 256 * K), replace=False)], seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    steps, times = args.rqvae_steps, []
    for _ in range(steps):
        batch = x[torch.from_numpy(rng.integers(0, n, size=cfg.batch_size))]
        start = time.perf_counter()
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    per_step = statistics.median(times[2:] or times)
    start = time.perf_counter()
    model.eval()
    chunk = 1 << 18
    codes = torch.cat([model.codes(x[i : i + chunk]) for i in range(0, n, chunk)])
    return {
        "s_per_step": per_step,
        "s_per_epoch": per_step * math.ceil(n / cfg.batch_size),
        "codes_s": time.perf_counter() - start,
        "collision_rate": collision_rate(codes),
        "steps": steps,
    }


def sid_trie_stage(folder: Path, n: int, args) -> dict:
    """The served SID table (RQ-KMeans codes + disambiguation level) and its trie."""
    from sidrec.decoding import SidTrie

    codes = np.load(_paths(folder)["codes"])
    start = time.perf_counter()
    full, sizes = _full_table(codes)
    seconds_table = time.perf_counter() - start
    start = time.perf_counter()
    trie = SidTrie.build(torch.from_numpy(full), sizes)
    build = time.perf_counter() - start
    nbytes = trie.nbytes()
    return {
        "table_s": seconds_table,
        "build_s": build,
        "bytes_per_item": (nbytes["csr"] + nbytes["dense_masks"]) / n,
        "dense_mib": nbytes["dense_masks"] / 2**20,
        "codebook_sizes": sizes,
        "max_degree": list(trie.max_degree),
    }


def decode_stage(folder: Path, n: int, args) -> dict:
    """Constrained beam search (beam 20), batch 1 and 32, with a random TIGER-sized
    decoder (`ToyTransformerDecoder`, seed 0) over two tries of N items:
    `fixed_*`: random distinct SIDs of 4 x 256 codes, the same model at every N
    (the bar of issue 18: p50 at 10M <= 1.5x p50 at 100k); `rq_*`: this N's
    RQ-KMeans table + disambiguation level, whose last K grows with collisions."""
    from sidrec.decoding import SidTrie, random_sid_table

    torch.set_num_threads(1)  # serving-like: one request, one core; and steadier timings
    out = {}
    fixed = [K] * 4
    tables = {
        "fixed": (random_sid_table(n, fixed, seed=0), fixed),
        "rq": _full_table(np.load(_paths(folder)["codes"])),
    }
    for name, (codes, sizes) in tables.items():
        trie = SidTrie.build(torch.as_tensor(codes), sizes)
        for key, value in _time_decode(trie, sizes, args.decode_reps).items():
            out[f"{name}_{key}"] = value
    out["rq_last_k"] = tables["rq"][1][-1]
    return out


def _time_decode(trie, sizes: list[int], reps: int) -> dict:
    from sidrec.decoding import ToyTransformerDecoder, constrained_beam_search

    model = ToyTransformerDecoder(sizes)  # same seed, same layers; heads sized to the table
    out = {}
    for b, count in ((1, reps), (32, max(3, reps // 4))):
        times = []
        for rep in range(count + 2):
            state = model.init_state(torch.arange(rep * b, rep * b + b))
            start = time.perf_counter()
            result = constrained_beam_search(model, b, trie, 20, 20, state=state)
            times.append(time.perf_counter() - start)
            assert bool((result.items[:, 0] >= 0).all()), "a row decoded no item"
        times = sorted(times[2:])  # the first two warm up allocations
        out[f"b{b}_p50_ms"] = 1e3 * statistics.median(times)
        out[f"b{b}_p99_ms"] = 1e3 * times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return out


def bundle_stage(folder: Path, n: int, args) -> dict:
    """A SID-GPT bundle (random weights, this N's SID table) saved, then loaded and
    asked one recommendation in a fresh process, as a Serve replica would."""
    from sidrec.data.sids import SidTable, disambiguate
    from sidrec.models.bundle import save_bundle
    from sidrec.models.sidgpt import sidgpt_beauty

    codes = np.load(_paths(folder)["codes"])
    table = SidTable(codes, disambiguate(codes), [K] * LEVELS, meta={"producer": "bench/scale"})
    model = sidgpt_beauty(torch.from_numpy(table.full_codes()), table.full_codebook_sizes())
    items = pq.read_table(
        _paths(folder)["items"], columns=["item_id", "source_id", "title", "categories"]
    )
    start = time.perf_counter()
    save_bundle(
        _paths(folder)["bundle"], "sidgpt", model.cfg.to_dict(), model.state_dict(), items, table
    )
    save_s = time.perf_counter() - start
    del model, items, table, codes
    child = subprocess.run(
        [sys.executable, __file__, str(_paths(folder)["bundle"])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    loaded = json.loads(child.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in _paths(folder)["bundle"].iterdir())
    return {"save_s": save_s, "bundle_mib": size / 2**20, **loaded}


def serve_stage(folder: Path, n: int, args) -> dict:
    """The bundle behind Ray Serve (serve_apps.recommender, 1 replica, batch 32):
    seconds until it answers, then --serve-seconds of POST /v1/recommend at 8
    clients; p50 / p99 and statuses."""
    import asyncio
    import socket

    import ray
    from ray import serve

    from sidrec.serving.app import AppArgs, build_app  # what serve_apps.recommender serves
    from sidrec.serving.loadgen import run_load

    ids = pq.read_table(_paths(folder)["items"], columns=["source_id"]).column(0)
    test = load_split(folder, "test")
    rows = range(0, len(test), max(1, len(test) // 256))
    bodies = [
        {"history": [ids[int(i)].as_py() for i in test.history(r)[-20:]], "k": 10} for r in rows
    ]
    del ids, test
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    start = time.perf_counter()
    app = AppArgs(
        model_uri=str(_paths(folder)["bundle"]), num_cpus=1, torch_threads=1,
        knobs={"max_batch_size": 32, "batch_wait_timeout_s": 0.01},
    )  # fmt: skip
    serve.run(build_app(app), name="scale", route_prefix="/scale")
    url = f"http://127.0.0.1:{port}/scale/v1/recommend"
    asyncio.run(run_load(url, bodies[:2], 1, 0.5, timeout_s=600))  # first answer (warm-up)
    ready = time.perf_counter() - start
    result = asyncio.run(run_load(url, bodies, 8, args.serve_seconds, timeout_s=60))
    serve.shutdown()
    ray.shutdown()
    return {
        "ready_s": ready,
        "answers_per_s": result.throughput,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
        "statuses": {str(k): v for k, v in result.statuses.items()},
    }


def eval_stage(folder: Path, n: int, args) -> dict:
    """Full-catalog evaluation (sidrec.eval.evaluate_scorer) of a popularity scorer over
    test users, slice by slice for --eval-seconds, the batch sized so that its [b x N]
    score and mask tensors stay within --eval-mem-mib; users/s -> hours for 1M users."""
    from sidrec.eval.runner import evaluate_scorer

    test = load_split(folder, "test")
    counts = np.bincount(test.history_items, minlength=n).astype(np.float32)
    pop = torch.from_numpy(counts / max(counts.max(), 1))
    # scores float32 + rank temporaries + two bool masks: ~12 bytes per (user, item)
    batch = max(1, min(1024, args.eval_mem_mib * 2**20 // (12 * n)))
    step = max(batch, 64)
    users, recall, start = 0, [], time.perf_counter()
    while users < len(test) and (users == 0 or time.perf_counter() - start < args.eval_seconds):
        stop = min(users + step, len(test))
        part = type(test)(
            test.users[users:stop], test.targets[users:stop],
            test.history_items, test.history_offsets[users : stop + 1],
        )  # fmt: skip
        metrics = evaluate_scorer(lambda h: pop.expand(len(h), n), part, n, batch_size=batch)
        recall.append(metrics["recall@10"] * (stop - users))
        users = stop
    seconds = time.perf_counter() - start
    rate = users / seconds
    return {
        "seconds": seconds,
        "users": users,
        "batch": batch,
        "users_per_s": rate,
        "h_for_1M_users": 1e6 / rate / 3600,
        "recall@10": sum(recall) / users,
    }


STAGES = {
    "generate": generate_stage,
    "read_splits": read_splits_stage,
    "embed_hashed": embed_hashed_stage,
    "embed_minilm": embed_minilm_stage,
    "rqkmeans": rqkmeans_stage,
    "rqvae": rqvae_stage,
    "sid_trie": sid_trie_stage,
    "decode": decode_stage,
    "bundle": bundle_stage,
    "serve": serve_stage,
    "eval": eval_stage,
}


# ---- helpers --------------------------------------------------------------------------------


def _quiet_ray_data() -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _load_embeddings(path: Path) -> np.ndarray:
    """[N x d] float32 from embeddings/<tag>.parquet, filled one row group at a time."""
    file = pq.ParquetFile(path)
    n = file.metadata.num_rows
    out = None
    row = 0
    for group in range(file.num_row_groups):
        column = file.read_row_group(group, columns=["embedding"]).column(0).combine_chunks()
        block = column.values.to_numpy().reshape(len(column), -1)
        out = np.empty((n, block.shape[1]), np.float32) if out is None else out
        out[row : row + len(block)] = block
        row += len(block)
    return out


def _full_table(codes: np.ndarray) -> tuple[np.ndarray, list[int]]:
    from sidrec.data.sids import disambiguate

    suffix = disambiguate(codes)
    full = np.concatenate([codes, suffix[:, None]], 1)
    return full, [K] * LEVELS + [int(suffix.max()) + 1]


def _load_and_answer(bundle: str) -> None:
    """Child process of bundle_stage: load time, RSS after load, one recommendation."""
    import resource

    import psutil

    from sidrec.models.bundle import load_bundle

    # One thread, as the decode stage: on 2 busy cores torch's 2-thread OpenMP
    # fan-out turned a 6 ms SID-GPT request into 200 ms (measured here).
    torch.set_num_threads(1)
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    rec = load_bundle(bundle)
    load_s = time.perf_counter() - start
    rss = psutil.Process().memory_info().rss
    start = time.perf_counter()
    out = rec.recommend([[0, 1, 2]], k=10)
    first_ms = 1e3 * (time.perf_counter() - start)
    start = time.perf_counter()
    rec.recommend([[3, 4, 5]], k=10)
    second_ms = 1e3 * (time.perf_counter() - start)
    assert int(out.items[0, 0]) >= 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "load_s": load_s,
                "replica_mib": rss / 2**20,
                "replica_model_mib": (rss - before) / 2**20,
                "replica_peak_mib": peak / 2**20,
                "first_request_ms": first_ms,
                "request_ms": second_ms,
            }
        )
    )


if __name__ == "__main__":
    _load_and_answer(sys.argv[1])
