"""The seam between event intake and the letter engine.

``handle_event`` stores the event, then hands it to an :class:`EventProcessor`. The letter engine
implements the processor; it may raise :class:`PermanentEventError` (the event ends ``failed``
with the reason) or :class:`TransientEventError` (the job is retried with backoff), and returns
callables to run after the transaction committed (immediate sends).

A :class:`BatchProcessor` can also take part in the worker's group commit
(``notifier.events.batching``, docs/decisions/0040): ``prepare`` does the reads that need no
database connection (settings, upstream data) for one event; ``process_many`` then decides and
writes for events of distinct clients in the batch's one transaction, given as an asyncpg
connection or a session (``notifier_common.db.Db``; the worker's batcher passes the
connection it holds, decision 0070).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from notifier_common.db import Db
from notifier_common.events import AnyEvent
from sqlalchemy.ext.asyncio import AsyncSession

AfterCommit = Callable[[], Awaitable[None]]


class PermanentEventError(Exception):
    """Processing can never succeed (e.g. the upstream says the client does not exist)."""


class TransientEventError(Exception):
    """Processing may succeed later (upstream timeout, 5xx)."""


class EventProcessor(Protocol):
    async def process(self, session: AsyncSession, event: AnyEvent) -> Sequence[AfterCommit]: ...


@runtime_checkable
class BatchProcessor(EventProcessor, Protocol):
    async def prepare(self, event: AnyEvent) -> Any: ...
    async def process_many(
        self,
        session: Db,
        items: Sequence[tuple[AnyEvent, Any]],
        *,
        notes: dict[Any, dict[str, Any]] | None = None,
    ) -> Sequence[AfterCommit]:
        """``notes``: when given, what the processor would log about each event goes there (by
        event id) instead, for the caller's one line per event (decision 0071)."""
        ...


class NoLetters:
    """Processor that stores events and triggers nothing."""

    async def process(self, session: AsyncSession, event: AnyEvent) -> Sequence[AfterCommit]:
        return ()

    async def prepare(self, event: AnyEvent) -> None:
        return None

    async def process_many(
        self,
        session: Db,
        items: Sequence[tuple[AnyEvent, Any]],
        *,
        notes: dict[Any, dict[str, Any]] | None = None,
    ) -> Sequence[AfterCommit]:
        return ()
