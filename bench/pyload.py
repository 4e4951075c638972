"""Fallback load generator (when ``wrk`` is missing): raw asyncio HTTP/1.1 keep-alive clients.

``python -m bench.pyload URL --token T --batch 100 --connections 16 --duration 5 --templates F``
prints one ``BENCH_JSON {...}`` line in the same shape as the wrk script's ``done()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from urllib.parse import urlsplit


async def client(
    host: str,
    port: int,
    path: str,
    token: str,
    templates: list[str],
    batch: int,
    deadline: float,
    stats: dict[str, int],
    latencies: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    prefix = f"{random.getrandbits(32):08x}-{os.getpid() % 0xFFFF:04x}-4{random.getrandbits(12):03x}-8{random.getrandbits(12):03x}-"  # noqa: E501
    counter = 0
    while time.monotonic() < deadline:
        items = []
        for _ in range(batch):
            counter += 1
            items.append(f'{{"id":"{prefix}{counter:012x}",' + templates[counter % len(templates)])
        body = ('{"events":[' + ",".join(items) + "]}").encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        t0 = time.perf_counter()
        try:
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            stats["read_err"] += 1
            return
        latencies.append(time.perf_counter() - t0)
        stats["requests"] += 1
        if not status_line.split()[1].startswith(b"2"):
            stats["status_err"] += 1
    writer.close()


async def main(args: argparse.Namespace, templates: list[str]) -> None:
    url = urlsplit(args.url)
    stats = {"requests": 0, "status_err": 0, "read_err": 0}
    latencies: list[float] = []
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(
        *(
            client(
                url.hostname or "127.0.0.1",
                url.port or 80,
                url.path,
                args.token,
                templates,
                args.batch,
                deadline,
                stats,
                latencies,
            )
            for _ in range(args.connections)
        )
    )
    elapsed = time.monotonic() - start
    latencies.sort()

    def pct(q: float) -> int:
        if not latencies:
            return 0
        return int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)

    out = {
        "requests": stats["requests"],
        "duration_us": int(elapsed * 1e6),
        "connect_err": 0,
        "read_err": stats["read_err"],
        "write_err": 0,
        "status_err": stats["status_err"],
        "timeout_err": 0,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
    }
    print("BENCH_JSON " + json.dumps(out), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token", default="")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--templates", required=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    parsed = parser.parse_args()
    asyncio.run(main(parsed, json.loads(Path(parsed.templates).read_text())))
