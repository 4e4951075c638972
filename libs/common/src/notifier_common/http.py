"""Small HTTP helpers: one shared httpx.AsyncClient per process, with sane limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from notifier_common.h1pool import Http1Pool


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's default transport (request building, TLS context, error mapping) over
    :class:`~notifier_common.h1pool.Http1Pool`: HTTP/1.1 keep-alive connections on asyncio
    protocols parsed by httptools instead of httpcore's pool and h11 (decision 0106)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        # one TLS context for both pools (httpx's, replaced below, made its own: ~20 ms each)
        ssl_context = httpx.create_ssl_context()
        super().__init__(limits=limits, verify=ssl_context)
        self._pool = Http1Pool(  # type: ignore[assignment]
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
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


#: what a request made straight on the pool (:func:`direct_pool`) raises where httpx would
#: raise ``httpx.TimeoutException`` / ``httpx.TransportError``
CORE_TIMEOUTS = (httpcore.TimeoutException,)
CORE_TRANSPORT_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


@dataclass(slots=True)
class Answer:
    """A whole HTTP response, as both ways of calling (httpx, :class:`DirectPool`) give it."""

    status: int
    retry_after: str | None
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        return cls(response.status_code, response.headers.get("Retry-After"), response.content)


@dataclass(frozen=True, slots=True)
class DirectPool:
    """The pool under a client made by :func:`create_http_client`, with the client's
    timeouts: requests on it skip httpx's request/response layer (URL merging, auth and
    redirect flows, cookies, header models: ~300 µs of CPU per request, decision 0076) and the
    ~40 objects per request it left in reference cycles (request, response, streams, pool
    events) for the garbage collector (decision 0102). Same connections, limits and timeouts;
    respx still intercepts (it patches the pool's ``handle_async_request``)."""

    pool: Http1Pool
    extensions: dict[str, Any]

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None = None,
    ) -> Answer:
        """The whole response, read (the connection goes back to the pool)."""
        response = await self.pool.request(
            method.encode("ascii"),
            url,
            headers=headers,
            content=content,
            extensions=self.extensions,
        )
        retry_after = None
        for name, value in response.headers:
            if name.lower() == b"retry-after":
                retry_after = value.decode("latin-1")
        return Answer(response.status, retry_after, response.content)


def json_request_headers(
    url: str, extra: Mapping[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    """What httpx would have sent for a JSON call to ``url``'s origin (Host, Accept,
    User-Agent) and ``extra``, as a :class:`DirectPool` request takes them."""
    headers = [
        (b"Host", httpx.URL(url).netloc),
        (b"Accept", b"application/json"),
        (b"User-Agent", b"notifier"),
    ]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    return headers


def direct_pool(http: httpx.AsyncClient) -> DirectPool | None:
    """The pool of a client made by :func:`create_http_client` (no proxy is mounted there), else
    None: any other client (tests over ASGI, a plain ``httpx.AsyncClient``) is used through
    httpx."""
    transport = http._transport
    if not isinstance(transport, AsyncioTransport) or http._mounts:
        return None
    pool = transport._pool
    if not isinstance(pool, Http1Pool):  # a transport whose pool someone replaced
        return None
    timeout = http.timeout
    return DirectPool(
        pool,
        {
            "timeout": {
                "connect": timeout.connect,
                "read": timeout.read,
                "write": timeout.write,
                "pool": timeout.pool,
            }
        },
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
