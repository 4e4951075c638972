"""Upstream failures, classified for the event handler.

Each is also a :class:`PermanentEventError` (the event ends ``failed`` with the message) or a
:class:`TransientEventError` (the job is retried later), so the letter engine need not map them.
"""

from __future__ import annotations

from typing import Any

from notifier.events.processing import PermanentEventError, TransientEventError


class UpstreamError(Exception):
    """Base of every enrichment failure; ``upstream`` is ``clients`` or ``billing``."""

    def __init__(self, message: str, *, upstream: str, url: str, status: int | None = None):
        super().__init__(message)
        self.upstream = upstream
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive pickle (arq pickles job errors) by default.
        return (_restore, (type(self), self.args, self.__dict__))


class UpstreamNotFound(UpstreamError, PermanentEventError):
    """The upstream answered 404: the client / contract does not exist."""


class UpstreamInvalid(UpstreamError, PermanentEventError):
    """The body does not validate (``fields`` names the offending ones), or an unexpected 4xx."""

    def __init__(
        self,
        message: str,
        *,
        upstream: str,
        url: str,
        status: int | None = None,
        fields: tuple[str, ...] = (),
    ):
        super().__init__(message, upstream=upstream, url=url, status=status)
        self.fields = fields


class UpstreamUnavailable(UpstreamError, TransientEventError):
    """Transport error, timeout, 5xx or 429 after the retries were spent.

    ``retry_after`` carries the upstream's Retry-After (seconds) when it asked for more than the
    client is willing to wait in-process, so the job can be deferred by that much.
    """

    def __init__(
        self,
        message: str,
        *,
        upstream: str,
        url: str,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, upstream=upstream, url=url, status=status)
        self.retry_after = retry_after


def _restore(cls: type[UpstreamError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
