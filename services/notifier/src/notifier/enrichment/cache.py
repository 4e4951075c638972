"""A small in-process TTL cache with single-flight, per enrichment resource.

Why: one event burst for a client (a balance sync touching 50 events for one client) should make
one upstream call, not fifty, and httpx round trips are the expensive part of event handling
(see PERF-NOTES). It is a cache of *reads* with a short TTL (default 30 s), never a source of
truth: every worker process has its own, and stale-by-seconds data is acceptable for the letters'
decisions (conditions are re-checked at send time).

- ``ttl > 0``: successful results are kept for ``ttl`` seconds (monotonic clock), at most
  ``max_entries`` of them (the oldest inserted is evicted first). Entries are kept in the
  order they expire, so each store also drops the expired ones at the front: the cache holds
  at most what the last ``ttl`` seconds loaded, not ``max_entries`` stale answers.
- ``ttl == 0``: nothing is kept; concurrent calls for the same key still share one in-flight
  request (single-flight), which never returns data older than the request itself.
- Errors are never cached; the callers waiting on a failed flight all get its exception.
- ``get(..., store=False)``: a flight started by this call shares its result with the callers
  waiting on it but does not keep it (a read that is not expected to repeat soon).
- A caller cancelled while waiting does not cancel the shared request for the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlightCache(Generic[V]):
    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._values: dict[Hashable, tuple[float, V]] = {}
        self._flights: dict[Hashable, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()

    def invalidate(self, key: Hashable) -> None:
        self._values.pop(key, None)

    def peek(self, key: Hashable) -> V | None:
        """The cached value if fresh, else ``None`` (expired entries are dropped)."""
        hit = self._values.get(key)
        if hit is None:
            return None
        expires_at, value = hit
        if expires_at <= self._clock():
            del self._values[key]
            return None
        return value

    def joinable(self, key: Hashable) -> bool:
        return key in self._flights

    async def get(
        self, key: Hashable, load: Callable[[], Awaitable[V]], *, store: bool = True
    ) -> V:
        """The cached value, else the result of the in-flight load, else a new ``load()``
        (kept when ``store`` and ``ttl > 0``)."""
        value = self.peek(key)
        if value is not None:
            return value
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._run(key, load, store=store))
            flight.add_done_callback(_consume_exception)
            self._flights[key] = flight
        return await asyncio.shield(flight)

    async def _run(self, key: Hashable, load: Callable[[], Awaitable[V]], *, store: bool) -> V:
        try:
            value = await load()
            if store and self.ttl > 0:
                self._store(key, value)
            return value
        finally:
            self._flights.pop(key, None)

    def _store(self, key: Hashable, value: V) -> None:
        self._values.pop(key, None)
        now = self._clock()
        values = self._values
        while values:
            oldest = next(iter(values))
            if len(values) < self.max_entries and values[oldest][0] > now:
                break
            del values[oldest]  # expired, or the oldest when full
        values[key] = (now + self.ttl, value)


def _consume_exception(task: asyncio.Task[V]) -> None:
    # Every waiter may have been cancelled; do not let asyncio log "never retrieved".
    if not task.cancelled():
        task.exception()
