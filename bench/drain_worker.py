"""One drain worker process for the benchmark: the notifier worker's own start-up (engine, gateway
client, enrichment, sender) and its cron function ``drain_due_letters`` called directly, so the
benchmark can start N drains at the same moment (arq runs the cron only at second 0 of a
minute). Waits for a token on the Redis list ``bench:go``; prints one ``BENCH_JSON`` line with
its window and every gateway call's duration. SIGTERM cancels the drain and still reports."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

from notifier.settings import get_settings
from notifier.worker import drain_due_letters, shutdown, startup
from redis.asyncio import Redis

GO_KEY = "bench:go"


def time_gateway_calls(durations: list[float]) -> None:
    """Record the wall time of every gateway HTTP call (one per chunk of a batch)."""
    from notifier.gateway_client import GatewayClient

    name = "_send_chunk" if hasattr(GatewayClient, "_send_chunk") else "send_batch"
    original = getattr(GatewayClient, name)

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            durations.append(time.perf_counter() - t0)

    setattr(GatewayClient, name, timed)


async def main() -> None:
    settings = get_settings()
    durations: list[float] = []
    time_gateway_calls(durations)
    ctx: dict[str, Any] = {"settings": settings}
    await startup(ctx)
    redis = Redis.from_url(settings.redis_url)
    out: dict[str, Any] = {}
    try:
        await redis.rpush("bench:ready", "1")
        await redis.blpop([GO_KEY], timeout=300)
        start = time.time()
        task = asyncio.ensure_future(drain_due_letters(ctx))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            out["report"] = await task
        except asyncio.CancelledError:
            out["report"] = "cancelled"
        out.update(start=start, end=time.time(), calls_ms=[round(d * 1000, 2) for d in durations])
    finally:
        print("BENCH_JSON " + json.dumps(out), flush=True)
        await redis.aclose()
        await shutdown(ctx)


if __name__ == "__main__":
    asyncio.run(main())
