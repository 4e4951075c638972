"""Group commit of events in the worker (docs/decisions/0040-group-commit-of-events.md).

Each arq ``handle_event`` job validates its event and does the reads that need no database
connection (``BatchProcessor.prepare``: letter settings, upstream data) on its own, then hands
the event to the process's :class:`EventBatcher` and awaits its own outcome. Every ``window``
seconds the batcher takes the pending events (at most one per client, oldest first; the others
wait for the next batch, so one client's events never share a transaction) and handles them in
one transaction: one multi-row insert of the events (stored ``processed`` at once: the same
transaction processes them), one status read of the ids already stored, the processor's
``process_many`` (locks in a stable order, one statement per kind of read and write), and an
update marking processed only the events stored earlier as ``processing``. After the commit,
each job gets its outcome and the after-commit actions (the coalesced immediate sends) run
without holding the jobs (decision 0079); ``aclose`` waits for them.

- If the batch transaction fails for any reason, every event of it is handled again alone by
  ``service.handle_event`` (its own transaction), so one bad event does not fail the others and
  each job sees its own outcome or exception (transient -> arq retries that job).
- A crash loses nothing: a job whose batch did not commit is retried by arq (its in-progress
  key expires), and the event row is the idempotency record (a retried event that committed is
  a ``duplicate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notifier_common.db import held_connection
from notifier_common.events import AnyEvent
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.events import repository, service
from notifier.events.processing import AfterCommit, BatchProcessor, PermanentEventError
from notifier.events.service import Outcome
from notifier.metrics import EVENTS_HANDLED
from notifier.models import EventStatus

log = get_logger("notifier.events.batching")
_NO_NOTES: dict[str, Any] = {}


@dataclass
class _Pending:
    body: Any
    event: AnyEvent
    prepared: Any
    done: asyncio.Future[Outcome]


async def handle_many(
    sessionmaker: async_sessionmaker[AsyncSession],
    processor: BatchProcessor,
    items: Sequence[tuple[AnyEvent, Any]],
    *,
    source: str = "queue",
) -> tuple[list[Outcome], Sequence[AfterCommit]]:
    """Store and process events of distinct clients in one transaction (raises on any error,
    nothing written then). Outcomes in the order of ``items``: processed or duplicate."""
    async with held_connection(sessionmaker) as connection:
        return await handle_many_on(connection, processor, items, source=source)


async def handle_many_on(
    connection: Any,
    processor: BatchProcessor,
    items: Sequence[tuple[AnyEvent, Any]],
    *,
    source: str = "queue",
) -> tuple[list[Outcome], Sequence[AfterCommit]]:
    """``handle_many`` in a transaction of its own on this asyncpg ``connection``
    (docs/decisions/0070-group-commit-on-the-driver.md)."""
    events = [event for event, _ in items]
    if len({e.client_id for e in events}) != len(events):
        raise ValueError("handle_many takes at most one event per client")
    async with connection.transaction():
        # stored already processed: this transaction processes them, and commits both or neither
        fresh = await repository.insert_received_many(
            connection, events, source=source, status=EventStatus.processed
        )
        known = await repository.statuses(connection, [e.id for e in events if e.id not in fresh])
        retried = {i for i, status in known.items() if status == EventStatus.processing}
        todo = [
            (event, prepared)
            for event, prepared in items
            if event.id in fresh or event.id in retried
        ]
        notes: dict[Any, dict[str, Any]] = {}
        after_commit = await processor.process_many(connection, todo, notes=notes)
        await repository.mark_many(connection, list(retried), EventStatus.processed)
    chosen = {event.id for event, _ in todo}
    outcomes: list[Outcome] = ["processed" if e.id in chosen else "duplicate" for e in events]
    processed = outcomes.count("processed")
    if processed:
        EVENTS_HANDLED.labels(source, "processed").inc(processed)
    if processed < len(events):
        EVENTS_HANDLED.labels(source, "duplicate").inc(len(events) - processed)
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome == "duplicate":
            log.info("events.duplicate", event_id=str(event.id), status=known[event.id].value)
        else:
            log.info(
                "events.processed",
                event_id=str(event.id),
                event_type=event.type,
                **notes.get(event.id, _NO_NOTES),
            )
    return outcomes, after_commit


class EventBatcher:
    """One per worker process; ``handle(body)`` is what the arq job awaits."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        processor: BatchProcessor,
        *,
        max_events: int = 200,
        window: float = 0.005,
        source: str = "queue",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.processor = processor
        self.max_events = max_events
        self.window = window
        self.source = source
        self._pending: list[_Pending] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()

    async def handle(self, body: Any) -> Outcome:
        """Store the event once and process it; transient errors propagate (arq retries)."""
        checked = service.validate(body)
        if checked.event is None:
            return await service.handle_event(
                self.sessionmaker, self.processor, body, source=self.source
            )
        event = checked.event
        try:
            prepared = await self.processor.prepare(event)
        except PermanentEventError as exc:
            return await service.fail(self.sessionmaker, event, exc, source=self.source)
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(body, event, prepared, done))
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run())
        return await done

    async def aclose(self) -> None:
        """Finish what was handed over (shutdown)."""
        if self._loop_task is not None:
            await self._loop_task
        while self._finishing:
            await asyncio.gather(*self._finishing)

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        clients: set[str] = set()
        for item in self._pending:
            if item.done.done():  # its job was cancelled (timeout): arq retries it
                continue
            if len(batch) < self.max_events and item.event.client_id not in clients:
                clients.add(item.event.client_id)
                batch.append(item)
            else:
                rest.append(item)
        self._pending = rest
        return batch

    async def _run(self) -> None:
        """While events keep coming: one pooled connection held, one transaction per batch on
        it; after a failed batch, a fresh connection (the held one may be what failed)."""
        while self._pending:
            try:
                async with held_connection(self.sessionmaker) as connection:
                    while self._pending:
                        await asyncio.sleep(self.window)
                        batch = self._take()
                        if batch and not await self._flush(connection, batch):
                            break
            except Exception as exc:  # no connection: each event alone (fails, arq retries)
                log.warning("events.batch_connection_failed", error=repr(exc)[:300])
                batch = self._take()
                if batch:
                    self._spawn(self._one_by_one(batch))

    async def _flush(self, connection: Any, batch: list[_Pending]) -> bool:
        try:
            outcomes, after_commit = await handle_many_on(
                connection,
                self.processor,
                [(item.event, item.prepared) for item in batch],
                source=self.source,
            )
        except Exception as exc:
            log.warning("events.batch_failed", events=len(batch), error=repr(exc)[:300])
            self._spawn(self._one_by_one(batch))
            return False
        self._spawn(self._finish(batch, outcomes, after_commit))
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(
        self, batch: list[_Pending], outcomes: list[Outcome], after_commit: Sequence[AfterCommit]
    ) -> None:
        # the jobs are done at commit: their letters are stored; if the process dies before the
        # sends below, the letters are due and the drain sends them (decision 0079)
        for item, outcome in zip(batch, outcomes, strict=True):
            if not item.done.done():
                item.done.set_result(outcome)
        await service.run_after_commit(after_commit)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        for item in batch:
            try:
                outcome = await service.handle_event(
                    self.sessionmaker, self.processor, item.body, source=self.source
                )
            except Exception as exc:
                if not item.done.done():
                    item.done.set_exception(exc)
            else:
                if not item.done.done():
                    item.done.set_result(outcome)
