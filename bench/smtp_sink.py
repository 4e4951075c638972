"""A local SMTP sink (aiosmtpd) that counts messages: ``python -m bench.smtp_sink --port P
--redis URL [--keep DIR]``. Every accepted message INCRs ``bench:smtp:count`` in Redis; the
first 50 raw messages are kept in DIR so the baseline can send exactly the same bytes."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from redis.asyncio import Redis

COUNT_KEY = "bench:smtp:count"


class Counting:
    def __init__(self, redis: Redis, keep: Path | None) -> None:
        self.redis = redis
        self.keep = keep
        self.kept = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self.redis.incr(COUNT_KEY)
        if self.keep is not None and self.kept < 50:
            self.kept += 1
            path = self.keep / f"{self.kept:02d}.eml"
            data = envelope.original_content or envelope.content
            await asyncio.to_thread(path.write_bytes, bytes(data))
        return "250 OK"


async def main(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis)
    keep = Path(args.keep) if args.keep else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    handler = Counting(redis, keep)
    loop = asyncio.get_running_loop()
    # served on this loop (aiosmtpd's Controller would use a thread with a loop of its own)
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", args.port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--keep", default="")
    asyncio.run(main(parser.parse_args()))
