"""Token bucket per provider in Redis: one atomic Lua script, Redis' clock, shared by processes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1]: bucket hash; ARGV: rate (tokens/s), burst, tokens wanted.
# Returns {granted, seconds until the next token (string)}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted < want then
  wait = (1 - tokens) / rate
end
return {granted, tostring(wait)}
"""


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    retry_after: float  # seconds until the next token, when not everything was granted


class RateLimiter:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_TAKE)

    async def take(self, provider: str, *, rate: float, burst: int, want: int) -> Grant:
        """Take up to ``want`` tokens now (never blocks)."""
        key = f"{self._prefix}:ratelimit:{provider}"
        granted, wait = await self._script(keys=[key], args=[rate, burst, want])
        return Grant(int(granted), float(wait))

    async def acquire(
        self, provider: str, *, rate: float, burst: int, want: int, max_wait: float
    ) -> Grant:
        """Take ``want`` tokens, waiting up to ``max_wait`` seconds; returns what was granted."""
        deadline = time.monotonic() + max_wait
        total = 0
        while True:
            grant = await self.take(provider, rate=rate, burst=burst, want=want - total)
            total += grant.granted
            if total >= want:
                return Grant(total, 0.0)
            remaining = deadline - time.monotonic()
            if grant.retry_after > remaining:
                backlog = (want - total - 1) / rate
                return Grant(total, grant.retry_after + backlog)
            await asyncio.sleep(grant.retry_after)
