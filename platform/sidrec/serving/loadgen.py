"""A bounded HTTP load generator for the endpoint (bench/serve_load.py, reliability
tests): `concurrency` clients in closed loop for `duration_s`, then it stops by
itself; every request has a timeout, so a hung server shows as timeouts, not as
a hung benchmark. Clients honour Retry-After on a 429, as a real one should.

    result = asyncio.run(run_load(url, bodies, concurrency=32, duration_s=10))
    result.throughput, result.percentile(99), result.statuses   # {200: 9120, 429: 31}
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LoadResult", "run_load"]

TIMEOUT = "timeout"
ERROR = "connection-error"
# What a client may resend once: the replica died under the request (500 from the
# proxy, 502/504, a dropped connection or no answer in time). Never 4xx.
RETRYABLE = frozenset({500, 502, 504, TIMEOUT, ERROR})


@dataclass
class LoadResult:
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)  # of 200 answers only
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or TIMEOUT / ERROR
    answers: list[dict[str, Any]] = field(default_factory=list)  # 200 bodies, if kept
    retry_after: set[str] = field(default_factory=set)  # Retry-After values seen
    retried: int = 0  # requests sent a second time (retry_once)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        """Successful answers per second."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def server_errors(self) -> int:
        """5xx other than 503 (which, like 429, is backpressure)."""
        return sum(
            n for s, n in self.statuses.items() if isinstance(s, int) and s >= 500 and s != 503
        )


async def run_load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    duration_s: float,
    timeout_s: float = 30.0,
    keep_answers: bool = False,
    on_tick: Callable[[float], None] | None = None,
    retry_once: bool = False,
) -> LoadResult:
    """POST bodies (cycled) to url from `concurrency` closed-loop clients.

    retry_once: a request that fails with a 500/502/504, a timeout or a dropped
    connection is sent once more (a recommendation is idempotent): what the
    endpoint's contract asks of clients for a request in flight on a replica that
    dies (docs/RESULTS_serve.md). Only the final answer is counted; `retried`
    counts the second sends."""
    import aiohttp

    result = LoadResult(duration_s=duration_s)
    source = itertools.cycle(bodies)
    deadline = time.perf_counter() + duration_s
    limit = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(session: aiohttp.ClientSession, payload: dict[str, Any]):
        retry_after = None
        try:
            async with session.post(url, json=payload) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
                status: Any = resp.status
                retry_after = resp.headers.get("Retry-After")
                if retry_after is not None:
                    result.retry_after.add(retry_after)
        except asyncio.TimeoutError:
            status, body = TIMEOUT, None
        except aiohttp.ClientError:
            status, body = ERROR, None
        return status, body, retry_after

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            payload = next(source)
            status, body, retry_after = await send(session, payload)
            if retry_once and status in RETRYABLE:
                result.retried += 1
                status, body, retry_after = await send(session, payload)
            result.statuses[status] += 1
            if status == 200:
                result.latencies_ms.append(1000 * (time.perf_counter() - start))
                if keep_answers:
                    result.answers.append(body)
            elif status in (429, 503):
                # A polite client waits as long as the server asks (else a little):
                # hammering a full queue only burns the CPU the replica needs.
                wait = _seconds(retry_after) if status == 429 else 0.01
                await asyncio.sleep(max(0.0, min(wait, deadline - time.perf_counter())))

    async with aiohttp.ClientSession(connector=limit, timeout=timeout) as session:
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(session)) for _ in range(concurrency)]
        if on_tick is not None:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.25)
                on_tick(time.perf_counter() - started)
        await asyncio.gather(*tasks)
        result.duration_s = time.perf_counter() - started
    return result


def _seconds(retry_after: str | None) -> float:
    try:
        return float(retry_after) if retry_after is not None else 0.01
    except ValueError:  # an HTTP date: not what Serve sends
        return 1.0
