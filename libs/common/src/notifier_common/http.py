"""Small HTTP helpers: one shared httpx.AsyncClient per process, with sane limits."""

from __future__ import annotations

import httpx

from notifier_common.httppool import AsyncioConnectionPool
from notifier_common.netbackend import AsyncioBackend


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's default transport (HTTP/1.1, TLS verification and error mapping) with httpcore's
    pool and connections on plain asyncio instead of anyio (decisions 0075 and 0101)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        # one TLS context for both pools (httpx's, replaced below, made its own: ~20 ms each)
        ssl_context = httpx.create_ssl_context()
        super().__init__(limits=limits, verify=ssl_context)
        self._pool = AsyncioConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )


def create_http_client(
    *,
    base_url: str = "",
    timeout: float = 5.0,
    max_connections: int = 100,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=limits,
        transport=AsyncioTransport(limits=limits),
        headers=headers,
    )


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after_seconds(response: httpx.Response, default: float | None = None) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"), default)


def parse_retry_after(value: str | None, default: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (delta-seconds or an HTTP date)."""
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
