"""Circuit breaker per provider, state in Redis so every gateway process sees the same circuit.

closed -> open after ``threshold`` consecutive transient failures; open -> half-open when the
cooldown has passed, where one probe call is let through (others still see ``open``); the
probe's success closes the circuit, its failure opens it for another cooldown. Permanent
errors count as success: the provider answered.

``allow`` also answers how many failures are counted. A success after an ``allow`` that found
the circuit closed with none counted has nothing to reset, and the dispatcher does not record
it (decision 0113): a call to a healthy provider costs one Redis round trip, not two. Failures
another process counts between that ``allow`` and the success are then reset by the next
success that follows an ``allow`` which saw them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1]: breaker hash. ARGV[1]: op (peek|allow|success|failure), ARGV[2]: threshold,
# ARGV[3]: cooldown ms, ARGV[4]: failures to add. Returns {state, ms until a call may be tried,
# consecutive failures counted}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until', 'failures')
local open_until = tonumber(state[1] or '0')
local probe_until = tonumber(state[2] or '0')
if op == 'success' then
  redis.call('DEL', KEYS[1])
  return {'closed', 0, 0}
end
if op == 'failure' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', tonumber(ARGV[4]))
  if open_until > 0 or failures >= threshold then
    redis.call('HSET', KEYS[1], 'open_until', now + cooldown)
    redis.call('HDEL', KEYS[1], 'probe_until')
    return {'open', cooldown, failures}
  end
  return {'closed', 0, failures}
end
local failures = tonumber(state[3] or '0')
if open_until == 0 then
  return {'closed', 0, failures}
end
if now < open_until then
  return {'open', open_until - now, failures}
end
if now < probe_until then
  return {'open', probe_until - now, failures}
end
if op == 'allow' then
  redis.call('HSET', KEYS[1], 'probe_until', now + cooldown)
end
return {'half_open', 0, failures}
"""


class BreakerState(enum.StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    state: BreakerState
    retry_after: float  # seconds
    failures: int = 0  # consecutive transient failures counted

    @property
    def clean(self) -> bool:
        """Closed with no failure counted: a success has nothing to reset."""
        return self.state is BreakerState.closed and not self.failures


class CircuitBreaker:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)

    async def _run(
        self, op: str, provider: str, *, threshold: int, cooldown: float, count: int = 1
    ) -> BreakerStatus:
        key = f"{self._prefix}:breaker:{provider}"
        state, wait_ms, failures = await self._script(
            keys=[key], args=[op, threshold, max(1, round(cooldown * 1000)), count]
        )
        raw = state.decode() if isinstance(state, bytes) else str(state)
        return BreakerStatus(BreakerState(raw), int(wait_ms) / 1000, int(failures))

    async def peek(self, provider: str, *, threshold: int, cooldown: float) -> BreakerStatus:
        """The state without side effects (half_open: a probe would be allowed now)."""
        return await self._run("peek", provider, threshold=threshold, cooldown=cooldown)

    async def allow(self, provider: str, *, threshold: int, cooldown: float) -> BreakerStatus:
        """closed: call; half_open: this caller is the one probe; open: do not call."""
        return await self._run("allow", provider, threshold=threshold, cooldown=cooldown)

    async def record_success(
        self, provider: str, *, threshold: int, cooldown: float
    ) -> BreakerStatus:
        return await self._run("success", provider, threshold=threshold, cooldown=cooldown)

    async def record_failures(
        self, provider: str, count: int, *, threshold: int, cooldown: float
    ) -> BreakerStatus:
        """Add ``count`` consecutive transient failures."""
        return await self._run(
            "failure", provider, threshold=threshold, cooldown=cooldown, count=count
        )
