"""Drain worker processes for the benchmark: the notifier worker's own start-up (engine, gateway
client, enrichment, sender) and its cron function ``drain_due_letters`` called directly, so the
benchmark can start N drains at the same moment (arq runs the cron only at second 0 of a
minute) and start each process once for several rounds.

Each round: wait for a token on ``bench:go``, drain until nothing is due or until ``bench:stop``
is set, then push one JSON report (window, every gateway call's duration) to ``bench:done``.
Every recorded batch adds its letters that reached a final state to ``bench:final``: the round's
progress, read from Redis (a count of the letters table every half second cost the measured
PostgreSQL ~100 ms of CPU per poll, a fifth of a core at 3,000 letters/s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from notifier.settings import get_settings
from notifier.worker import drain_due_letters, shutdown, startup, use_uvloop
from redis.asyncio import Redis

GO, STOP, DONE, READY = "bench:go", "bench:stop", "bench:done", "bench:ready"
FINAL = "bench:final"
FINAL_AT = "bench:final_at"  # wall time (time.time()) of the last count added to FINAL


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


def count_final_letters(redis: Redis) -> None:
    """After each recorded batch, add its letters now sent, failed, skipped or expired to
    ``bench:final`` (a retried letter is due again later: not counted until it is final), and
    the time of it to ``bench:final_at``: the round ends when the last letter was counted, not
    at the next look of the bench's poll."""
    from notifier.letters.drain import LetterSender

    original = LetterSender._send

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        report = await original(self, *args, **kwargs)
        final = report.sent + report.failed + report.skipped + report.expired
        if final:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.incrby(FINAL, final)
                pipe.set(FINAL_AT, repr(time.time()))
                await pipe.execute()
        return report

    LetterSender._send = counted  # type: ignore[method-assign]


async def one_round(ctx: dict[str, Any], redis: Redis, durations: list[float]) -> dict[str, Any]:
    durations.clear()
    start = time.time()
    task = asyncio.ensure_future(drain_due_letters(ctx))
    while not task.done():
        if await redis.exists(STOP):
            task.cancel()
        await asyncio.wait([task], timeout=0.1)
    report: Any = "stopped"
    if not task.cancelled():
        with contextlib.suppress(Exception):
            report = task.result()
    return {
        "report": report,
        "start": start,
        "end": time.time(),
        "calls_ms": [round(d * 1000, 2) for d in durations],
    }


async def main() -> None:
    settings = get_settings()
    durations: list[float] = []
    time_gateway_calls(durations)
    ctx: dict[str, Any] = {"settings": settings}
    await startup(ctx)
    redis = Redis.from_url(settings.redis_url)
    count_final_letters(redis)
    try:
        await redis.rpush(READY, "1")
        while True:
            if await redis.blpop([GO], timeout=1) is None:
                continue
            out = await one_round(ctx, redis, durations)
            await redis.rpush(DONE, json.dumps(out))
    finally:
        await redis.aclose()
        await shutdown(ctx)


if __name__ == "__main__":
    use_uvloop()  # the same event loop as `notifier worker`
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
