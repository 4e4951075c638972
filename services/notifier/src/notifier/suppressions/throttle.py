"""A fixed-window counter per client IP in Redis (shared by every notifier-api process)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

WINDOW = 60


async def retry_after(redis: Redis, *, scope: str, client: str, limit: int) -> int | None:
    """Count this request; seconds to wait when over ``limit`` in the current minute, else None."""
    now = time.time()
    window = int(now // WINDOW)
    key = f"notifier:throttle:{scope}:{client}:{window}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, WINDOW + 5)
        count, _ = await pipe.execute()
    if int(count) <= limit:
        return None
    return max(1, int((window + 1) * WINDOW - now + 0.999))
