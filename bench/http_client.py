"""Client CPU per upstream GET (decision 0106): the shared client's pool against httpx's own.

    uv run python -m bench.http_client [--requests 20000] [--concurrency 16] [--runs 3]

Starts the upstream stub (``deploy.upstream_stub`` under uvicorn), then, alternately, sends
``--requests`` GETs for client balances with ``--concurrency`` in flight through

- ``direct``: ``direct_pool(create_http_client())``, the path the worker's enrichment and
  gateway calls take (``Http1Pool``);
- ``httpx``: ``create_http_client().get`` (httpx's request/response layer over ``Http1Pool``);
- ``httpcore``: a plain ``httpx.AsyncClient`` (httpcore's pool and h11), the baseline;

and prints this process's CPU per GET (``time.process_time``) and GETs per second, each a
median of ``--runs``. The stub runs in its own process; its CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvloop
from notifier_common.http import create_http_client, direct_pool, json_request_headers

from bench.procs import Supervisor, free_port, script, wait_port

Get = Callable[[str], Awaitable[int]]


async def _measure(get: Get, origin: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(µs of this process's CPU per GET, GETs per second)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            status = await get(f"{origin}/v1/clients/c{i % 5000}/balance")
        if status not in (200, 404, 503):
            raise RuntimeError(f"unexpected status {status}")

    await asyncio.gather(*(one(i) for i in range(concurrency)))  # connections open, warm
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / requests * 1e6, requests / wall


async def _run(way: str, origin: str, requests: int, concurrency: int) -> tuple[float, float]:
    if way == "httpcore":
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, headers={"Accept": "application/json"}) as c:
            return await _measure(lambda url: _status(c.get(url)), origin, requests, concurrency)
    async with create_http_client() as client:
        if way == "httpx":
            return await _measure(
                lambda url: _status(client.get(url)), origin, requests, concurrency
            )
        direct = direct_pool(client)
        assert direct is not None
        headers = json_request_headers(origin)

        async def get(url: str) -> int:
            return (await direct.request("GET", url, headers)).status

        return await _measure(get, origin, requests, concurrency)


async def _status(sent: Awaitable[httpx.Response]) -> int:
    return (await sent).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sup = Supervisor(Path(tempfile.mkdtemp(prefix="bench-http-")))
    port = free_port()
    stub = sup.start(
        "upstream-stub",
        [script("uvicorn"), "deploy.upstream_stub:app", "--port", str(port), "--log-level",
         "warning"],
        env={},
        sample=False,
    )  # fmt: skip
    try:
        wait_port(port, stub)
        ways = ("direct", "httpx", "httpcore")
        results: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
        for _ in range(args.runs):
            for way in ways:
                origin = f"http://127.0.0.1:{port}"
                measured = uvloop.run(_run(way, origin, args.requests, args.concurrency))
                results[way].append(measured)
        print(f"{args.requests} GETs, {args.concurrency} in flight, median of {args.runs}:")
        for way, runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            rate = statistics.median(r[1] for r in runs)
            low, high = min(r[0] for r in runs), max(r[0] for r in runs)
            print(f"  {way:9} {cpu:6.0f} µs CPU per GET ({low:.0f}..{high:.0f}), {rate:6.0f} GET/s")
    finally:
        sup.stop_all()


if __name__ == "__main__":
    main()
