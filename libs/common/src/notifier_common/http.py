"""Small HTTP helpers: one shared httpx.AsyncClient per process, with sane limits."""

from __future__ import annotations

import importlib.util
import sys

import httpx

if importlib.util.find_spec("sniffio") is None:  # pragma: no branch
    # httpcore runs ``import sniffio`` on every request to learn the async library; when
    # sniffio is not installed (httpx >= 0.28 no longer needs it) each of those failing imports
    # searches all of sys.path again (~0.5 ms of CPU per request, a third of the worker's
    # enrichment cost). A ``None`` entry makes that import fail at once; httpcore then assumes
    # asyncio, exactly as it does after the slow failure.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


def create_http_client(
    *,
    base_url: str = "",
    timeout: float = 5.0,
    max_connections: int = 100,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers=headers,
    )


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after_seconds(response: httpx.Response, default: float | None = None) -> float | None:
    value = response.headers.get("Retry-After")
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
