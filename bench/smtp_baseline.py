"""The drain_smtp baseline: aiosmtplib alone sending the messages the gateway sent (kept raw by
the sink) N times over C persistent connections. Prints ``BENCH_JSON {"sent", "seconds"}``."""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import time
from email.message import Message
from pathlib import Path

import aiosmtplib


async def sender(
    port: int, messages: list[Message], counter: list[int], total: int, sent: list[int]
) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await client.connect()
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            await client.send_message(messages[i % len(messages)])
            sent[0] += 1
    finally:
        await client.quit()


async def main(args: argparse.Namespace, messages: list[Message]) -> None:
    counter, sent = [0], [0]
    t0 = time.perf_counter()
    await asyncio.gather(
        *(sender(args.port, messages, counter, args.count, sent) for _ in range(args.connections))
    )
    seconds = time.perf_counter() - t0
    print("BENCH_JSON " + json.dumps({"sent": sent[0], "seconds": seconds}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--messages", required=True, help="directory of .eml files")
    parsed = parser.parse_args()
    raw = [p.read_bytes() for p in sorted(Path(parsed.messages).glob("*.eml"))]
    asyncio.run(main(parsed, [email.message_from_bytes(r) for r in raw]))
