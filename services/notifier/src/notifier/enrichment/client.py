"""HTTP client of the upstream "clients" and "billing" services (enrichment of events).

One instance per process around the shared ``httpx.AsyncClient`` (created in worker startup).
Each call: ``GET``, classify, retry transient failures in-process a few times, validate.

- 2xx: the body is validated into a model; a bad body -> :class:`UpstreamInvalid` naming fields.
- 404 -> :class:`UpstreamNotFound` (permanent; not retried).
- other 4xx -> :class:`UpstreamInvalid` (permanent: retrying an unexpected answer does not help).
- transport errors, timeouts, 5xx, 429 -> retried ``retries`` times with exponential backoff and
  jitter; a Retry-After is honoured (waited at least) when it is at most ``max_retry_after``
  seconds, otherwise the call gives up at once. Then :class:`UpstreamUnavailable` (transient:
  the event job is retried later by arq).

Results are cached per id for ``cache_ttl`` seconds with single-flight (see ``cache.py``);
``fresh=True`` (the send-time re-checks, an operator's fresh resend) skips the cached value,
drops it, and does not keep its own: a drain re-checks thousands of distinct clients once each,
and keeping those answers held ~1.6 KB per client and resource, up to ``cache_max_entries``
each, in a process whose target is < 120 MB (decision 0081).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from notifier_common.http import (
    CORE_TIMEOUTS,
    CORE_TRANSPORT_ERRORS,
    Answer,
    direct_pool,
    is_transient_status,
    json_request_headers,
    parse_retry_after,
)
from notifier_common.logging import get_logger
from pydantic import BaseModel, ValidationError

from notifier.enrichment.cache import SingleFlightCache
from notifier.enrichment.errors import UpstreamInvalid, UpstreamNotFound, UpstreamUnavailable
from notifier.enrichment.metrics import ENRICHMENT_CACHE, UPSTREAM_DURATION, UPSTREAM_REQUESTS
from notifier.enrichment.schemas import Balance, ClientProfile, Contract

M = TypeVar("M", bound=BaseModel)
Sleep = Callable[[float], Awaitable[None]]

log = get_logger("notifier.enrichment")

_ACCEPT = {"Accept": "application/json"}


class _Retryable(Exception):
    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class EnrichmentClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clients_url: str,
        billing_url: str,
        retries: int = 3,
        backoff: float = 0.2,
        cache_ttl: float = 30.0,
        max_backoff: float = 5.0,
        max_retry_after: float = 10.0,
        cache_max_entries: int = 10_000,
        max_concurrency: int | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``retries``: extra attempts after the first; ``backoff``: first delay in seconds
        (doubled per attempt, capped at ``max_backoff``, jittered to 50-100 %);
        ``max_concurrency``: most requests in flight at once (the others queue in-process:
        httpx costs more CPU per request the more run concurrently, see PERF-NOTES)."""
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._http = http
        self._core = direct_pool(http)
        self._core_headers: dict[str, list[tuple[bytes, bytes]]] = {}
        self._clients_url = clients_url.rstrip("/")
        self._billing_url = billing_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._clients: SingleFlightCache[Packed] = SingleFlightCache(
            ttl=cache_ttl, max_entries=cache_max_entries, clock=clock
        )
        self._balances: SingleFlightCache[Packed] = SingleFlightCache(
            ttl=cache_ttl, max_entries=cache_max_entries, clock=clock
        )
        self._contracts: SingleFlightCache[Packed] = SingleFlightCache(
            ttl=cache_ttl, max_entries=cache_max_entries, clock=clock
        )

    async def client(self, client_id: str, *, fresh: bool = False) -> ClientProfile:
        url = f"{self._clients_url}/v1/clients/{quote(client_id, safe='')}"
        return await self._cached(
            self._clients, client_id, fresh, "clients", "client", url, ClientProfile
        )

    async def balance(self, client_id: str, *, fresh: bool = False) -> Balance:
        url = f"{self._billing_url}/v1/clients/{quote(client_id, safe='')}/balance"
        return await self._cached(
            self._balances, client_id, fresh, "billing", "balance", url, Balance
        )

    async def contract(self, contract_id: str, *, fresh: bool = False) -> Contract:
        url = f"{self._billing_url}/v1/contracts/{quote(contract_id, safe='')}"
        return await self._cached(
            self._contracts, contract_id, fresh, "billing", "contract", url, Contract
        )

    def invalidate(self, client_id: str) -> None:
        """Forget what is cached for a client (its profile and balance)."""
        self._clients.invalidate(client_id)
        self._balances.invalidate(client_id)

    async def _cached(
        self,
        cache: SingleFlightCache[Packed],
        key: str,
        fresh: bool,
        upstream: str,
        resource: str,
        url: str,
        model: type[M],
    ) -> M:
        async def load() -> Packed:
            return pack(await self._fetch(upstream, resource, url, model))

        if fresh:
            cache.invalidate(key)
        if cache.peek(key) is not None:
            result = "hit"
        else:
            result = "shared" if cache.joinable(key) else "miss"
        ENRICHMENT_CACHE.labels(resource, result).inc()
        return unpack(model, await cache.get(key, load, store=not fresh))

    async def _fetch(self, upstream: str, resource: str, url: str, model: type[M]) -> M:
        failure = _Retryable("no attempt made")
        for attempt in range(self.retries + 1):
            try:
                return await self._attempt(upstream, resource, url, model)
            except _Retryable as exc:
                failure = exc
            if attempt == self.retries:
                break
            delay = self._delay(attempt, failure.retry_after)
            if delay is None:
                raise UpstreamUnavailable(
                    f"{upstream} GET {url}: {failure.reason}, Retry-After "
                    f"{failure.retry_after:.0f}s exceeds {self.max_retry_after:.0f}s",
                    upstream=upstream,
                    url=url,
                    status=failure.status,
                    retry_after=failure.retry_after,
                )
            log.warning(
                "enrichment.retry",
                upstream=upstream,
                url=url,
                reason=failure.reason,
                attempt=attempt + 1,
                delay=round(delay, 3),
            )
            await self._sleep(delay)
        raise UpstreamUnavailable(
            f"{upstream} GET {url}: {failure.reason} (after {self.retries + 1} attempts)",
            upstream=upstream,
            url=url,
            status=failure.status,
            retry_after=failure.retry_after,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        base = min(self.max_backoff, self.backoff * 2**attempt)
        jittered = base / 2 + random.uniform(0, base / 2)
        if retry_after is None:
            return jittered
        if retry_after > self.max_retry_after:
            return None
        return max(retry_after, jittered)

    async def _get(self, url: str) -> Answer:
        """One GET. With the process's shared client (``create_http_client``), straight on its
        pool (``Http1Pool``, decision 0106): httpx's request/response layer (URL merging, auth
        and redirect flows, cookies, header models) cost ~300 µs of CPU per upstream read, ~14 %
        of the worker's CPU per event (decision 0076). Same pool, timeouts and connections;
        respx still intercepts (it patches the pool's ``handle_async_request``). Any other
        client (tests over ASGI) goes through httpx."""
        if self._core is None:
            return Answer.of(await self._http.get(url, headers=_ACCEPT))
        origin, _, _ = url.partition("/v1/")
        headers = self._core_headers.get(origin)
        if headers is None:
            headers = self._core_headers[origin] = json_request_headers(origin)
        return await self._core.request("GET", url, headers)

    async def _attempt(self, upstream: str, resource: str, url: str, model: type[M]) -> M:
        outcome = "ok"
        started = time.perf_counter()
        try:
            if self._slots is None:
                response = await self._get(url)
            else:
                async with self._slots:
                    response = await self._get(url)
        except (httpx.TimeoutException, *CORE_TIMEOUTS) as exc:
            outcome = "timeout"
            raise _Retryable(f"timeout ({type(exc).__name__})") from exc
        except (httpx.TransportError, *CORE_TRANSPORT_ERRORS) as exc:
            outcome = "transport_error"
            raise _Retryable(f"transport error ({type(exc).__name__}: {exc})") from exc
        finally:
            UPSTREAM_DURATION.labels(upstream, resource).observe(time.perf_counter() - started)
            if outcome != "ok":
                UPSTREAM_REQUESTS.labels(upstream, resource, outcome).inc()
        status = response.status
        if status == 404:
            UPSTREAM_REQUESTS.labels(upstream, resource, "not_found").inc()
            raise UpstreamNotFound(
                f"{upstream} GET {url}: {resource} not found (404)",
                upstream=upstream,
                url=url,
                status=status,
            )
        if is_transient_status(status):
            UPSTREAM_REQUESTS.labels(upstream, resource, "transient_status").inc()
            raise _Retryable(
                f"HTTP {status}", status=status, retry_after=parse_retry_after(response.retry_after)
            )
        if not 200 <= status < 300:
            UPSTREAM_REQUESTS.labels(upstream, resource, "unexpected_status").inc()
            raise UpstreamInvalid(
                f"{upstream} GET {url}: unexpected HTTP {status}: {response.text[:200]}",
                upstream=upstream,
                url=url,
                status=status,
            )
        parsed = _parse(response, model, upstream=upstream, resource=resource, url=url)
        UPSTREAM_REQUESTS.labels(upstream, resource, "ok").inc()
        return parsed


#: a model's field values in field order, lists as tuples: a tuple of strings, numbers and
#: ``Decimal``s is untracked by the garbage collector (decision 0081)
Packed = tuple[Any, ...]


def pack(value: BaseModel) -> Packed:
    """What the cache keeps of an upstream answer. The validated models themselves (~4 tracked
    objects and ~540 bytes each) made a worker with 10,000 cached clients walk ~115,000
    objects in every full collection (~60 ms, with every event in flight waiting) and hold
    ~49 MB; packed: ~21 MB and nothing to walk."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in value.__dict__.values())


def unpack(model: type[M], packed: Packed) -> M:
    """The model again, without validating twice (~6 µs: ``model_construct``)."""
    values: dict[str, Any] = {
        name: list(v) if isinstance(v, tuple) else v
        for name, v in zip(model.model_fields, packed, strict=True)
    }
    return model.model_construct(**values)


def _parse(response: Answer, model: type[M], *, upstream: str, resource: str, url: str) -> M:
    try:
        data = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        UPSTREAM_REQUESTS.labels(upstream, resource, "invalid").inc()
        raise UpstreamInvalid(
            f"{upstream} GET {url}: {resource} body is not JSON ({exc})",
            upstream=upstream,
            url=url,
            status=response.status,
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        UPSTREAM_REQUESTS.labels(upstream, resource, "invalid").inc()
        errors = exc.errors(include_url=False, include_input=False)
        fields = tuple(".".join(str(p) for p in e["loc"]) or "<body>" for e in errors)
        detail = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, errors, strict=True))
        raise UpstreamInvalid(
            f"{upstream} GET {url}: invalid {resource}: {detail}",
            upstream=upstream,
            url=url,
            status=response.status,
            fields=fields,
        ) from exc
