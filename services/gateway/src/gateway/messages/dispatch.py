"""Send claimed messages: switch, suppression, circuit breaker, rate limit, then the provider.

Nothing here raises for an expected failure: every message ends with a :class:`SendResult`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from notifier_common.logging import get_logger
from redis.exceptions import RedisError

from gateway.metrics import PROVIDER_CALL_SECONDS, SENDS
from gateway.models import ALL_SCOPES
from gateway.providers.base import Message, Outcome, SendResult
from gateway.providers.registry import ProviderEntry, ProviderRegistry
from gateway.resilience.breaker import BreakerState, CircuitBreaker
from gateway.resilience.ratelimit import RateLimiter
from gateway.settings import GatewaySettings

log = get_logger("gateway.dispatch")

SUPPRESSION_SCOPE_KEY = "suppression_scope"


@dataclass(slots=True)
class Pending:
    """A claimed message on its way to a provider."""

    message_id: uuid.UUID
    idempotency_key: str
    claim_token: uuid.UUID
    message: Message
    provider: str | None


def normalize_address(address: str) -> str:
    return address.strip().lower()


def suppression_scopes(message: Message) -> set[str]:
    """Scopes that stop this message: ``*``, its channel, and ``metadata.suppression_scope``."""
    scopes = {ALL_SCOPES, message.channel}
    extra = message.metadata.get(SUPPRESSION_SCOPE_KEY)
    if isinstance(extra, str) and extra:
        scopes.add(extra)
    return scopes


def addresses_to_check(message: Message) -> list[str]:
    if message.action != "send":  # (un)subscribe, CRM updates must reach suppressed people too
        return []
    return [normalize_address(r.address) for r in message.to if r.address]


class Dispatcher:
    def __init__(
        self,
        *,
        registry: ProviderRegistry,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        settings: GatewaySettings,
    ) -> None:
        self.registry = registry
        self.limiter = limiter
        self.breaker = breaker
        self.settings = settings

    async def dispatch(
        self,
        items: Sequence[Pending],
        *,
        disabled: set[str],
        suppressed: set[tuple[str, str]],
    ) -> list[SendResult]:
        """Results in the order of ``items``. ``suppressed`` holds (address, scope) pairs."""
        results: list[SendResult | None] = [None] * len(items)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            early = self._screen(item, disabled=disabled, suppressed=suppressed)
            if early is not None:
                results[i] = early
            else:
                assert item.provider is not None
                groups[item.provider].append(i)
        for name, indexes in groups.items():
            entry = self.registry.get(name)
            assert entry is not None
            sent = await self._send_group(entry, [items[i] for i in indexes])
            for i, result in zip(indexes, sent, strict=True):
                results[i] = result
        final = [r for r in results if r is not None]
        counts = Counter(
            (item.provider or "-", result.outcome.value, result.code or "")
            for item, result in zip(items, final, strict=True)
        )
        for labels, n in counts.items():
            SENDS.labels(*labels).inc(n)
        return final

    def _screen(
        self, item: Pending, *, disabled: set[str], suppressed: set[tuple[str, str]]
    ) -> SendResult | None:
        """Answers that need no provider call; may drop suppressed recipients from the item."""
        if item.provider is None or item.provider not in self.registry:
            return SendResult.permanent(
                "unknown_provider",
                f"no provider {item.provider!r} for channel {item.message.channel!r}",
            )
        if item.provider in disabled:
            return SendResult(
                Outcome.skipped, code="disabled", reason=f"provider {item.provider} is switched off"
            )
        if not addresses_to_check(item.message):
            return None
        scopes = suppression_scopes(item.message)
        keep = [
            r
            for r in item.message.to
            if not r.address
            or not any((normalize_address(r.address), s) in suppressed for s in scopes)
        ]
        if not keep:
            return SendResult(
                Outcome.skipped, code="suppressed", reason="every recipient is suppressed"
            )
        if len(keep) < len(item.message.to):
            item.message = item.message.model_copy(update={"to": keep})
            item.message.remember_json(None)  # no longer the message as received
        return None

    async def _send_group(self, entry: ProviderEntry, items: list[Pending]) -> list[SendResult]:
        conf = entry.settings
        size = conf.chunk_size or entry.provider.chunk_size or self.settings.default_chunk_size
        limit = asyncio.Semaphore(conf.concurrency or self.settings.default_concurrency)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]

        async def run(chunk: list[Pending]) -> list[SendResult]:
            async with limit:
                return await self._send_chunk(entry, chunk)

        done = await asyncio.gather(*(run(c) for c in chunks))
        return [r for chunk_results in done for r in chunk_results]

    def _breaker_args(self, entry: ProviderEntry) -> dict[str, float]:
        conf = entry.settings
        return {
            "threshold": conf.breaker_threshold or self.settings.breaker_threshold,
            "cooldown": conf.breaker_cooldown_seconds or self.settings.breaker_cooldown_seconds,
        }

    async def _send_chunk(self, entry: ProviderEntry, chunk: list[Pending]) -> list[SendResult]:
        allowed, refused, clean = await self._pass_breaker(entry, len(chunk))
        allowed, limited = await self._pass_rate_limit(entry, allowed)
        sent = await self._call(entry, [p.message for p in chunk[:allowed]]) if allowed else []
        if sent:
            await self._record_breaker(entry, sent, clean=clean)
        return sent + limited + refused  # chunk order: sent, then rate-limited, then refused

    async def _pass_breaker(
        self, entry: ProviderEntry, n: int
    ) -> tuple[int, list[SendResult], bool]:
        """How many of ``n`` may be sent, the circuit_open answers for the rest, and whether
        the circuit was closed with no failure counted (a success need not be recorded)."""
        args = self._breaker_args(entry)
        try:
            status = await self.breaker.allow(
                entry.name, threshold=int(args["threshold"]), cooldown=args["cooldown"]
            )
        except RedisError:
            log.warning("gateway.breaker_unavailable", provider=entry.name)
            return n, [], False
        if status.state is BreakerState.closed:
            return n, [], status.clean
        allowed = 1 if status.state is BreakerState.half_open else 0
        wait = status.retry_after or args["cooldown"]
        refused = [
            SendResult.transient("circuit_open", "provider circuit is open", retry_after=wait)
            for _ in range(n - allowed)
        ]
        return allowed, refused, False

    async def _pass_rate_limit(self, entry: ProviderEntry, n: int) -> tuple[int, list[SendResult]]:
        conf = entry.settings
        if not n or conf.rate_per_second is None:
            return n, []
        burst = conf.burst or max(1, int(conf.rate_per_second))
        try:
            grant = await self.limiter.acquire(
                entry.name,
                rate=conf.rate_per_second,
                burst=burst,
                want=n,
                max_wait=self.settings.rate_limit_max_wait_seconds,
            )
        except RedisError:
            log.warning("gateway.rate_limiter_unavailable", provider=entry.name)
            return n, []
        limited = [
            SendResult.transient(
                "rate_limited", "provider rate limit reached", retry_after=grant.retry_after
            )
            for _ in range(n - grant.granted)
        ]
        return grant.granted, limited

    async def _call(self, entry: ProviderEntry, messages: list[Message]) -> list[SendResult]:
        """The provider boundary: exceptions and timeouts become transient results."""
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(
                entry.provider.send_many(messages), timeout=self.settings.provider_timeout_seconds
            )
            if len(results) != len(messages):
                raise RuntimeError(f"send_many returned {len(results)} for {len(messages)}")
            return list(results)
        except TimeoutError:
            log.warning("gateway.provider_timeout", provider=entry.name, count=len(messages))
            return [SendResult.transient("timeout", "provider call timed out") for _ in messages]
        except Exception as exc:
            log.exception("gateway.provider_crashed", provider=entry.name)
            reason = f"provider raised {type(exc).__name__}"
            return [SendResult.transient("internal", reason) for _ in messages]
        finally:
            PROVIDER_CALL_SECONDS.labels(entry.name).observe(time.perf_counter() - started)

    async def _record_breaker(
        self, entry: ProviderEntry, results: list[SendResult], *, clean: bool
    ) -> None:
        """A success resets the failures counted, a chunk of transient failures adds to them;
        a success after an ``allow`` that found none counted has nothing to reset and costs no
        round trip (decision 0113)."""
        failures = sum(r.outcome is Outcome.transient_error for r in results)
        succeeded = failures < len(results)
        if succeeded and clean:
            return
        args = self._breaker_args(entry)
        threshold, cooldown = int(args["threshold"]), args["cooldown"]
        try:
            if succeeded:
                await self.breaker.record_success(
                    entry.name, threshold=threshold, cooldown=cooldown
                )
            else:
                status = await self.breaker.record_failures(
                    entry.name, failures, threshold=threshold, cooldown=cooldown
                )
                if status.state is BreakerState.open:
                    log.warning("gateway.breaker_opened", provider=entry.name)
        except RedisError:
            log.warning("gateway.breaker_unavailable", provider=entry.name)
