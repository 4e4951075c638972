"""Every SQL query about events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from notifier_common.db import Db, driver
from notifier_common.events import Envelope
from notifier_common.pagination import newest_first
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import Event, EventStatus


async def insert_received(session: AsyncSession, event: Envelope, *, source: str) -> bool:
    """Store a valid event as ``processing``. False if its id is already stored."""
    stmt = (
        insert(Event)
        .values(
            id=event.id,
            type=event.type,
            version=event.version,
            client_id=event.client_id,
            producer=event.producer,
            occurred_at=event.occurred_at,
            trace_id=event.trace_id,
            body=event.model_dump(mode="json"),
            status=EventStatus.processing,
            source=source,
        )
        .on_conflict_do_nothing(index_elements=[Event.id])
        .returning(Event.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


# The group commit's statements (decision 0040) run on the driver connection (decision 0070):
# fixed shapes over arrays, prepared once per connection by asyncpg.

_INSERT_RECEIVED_MANY_SQL = """
INSERT INTO notifier.events (id, type, version, client_id, producer, occurred_at, trace_id, body,
    status, source, processed_at)
SELECT id, type, version, client_id, producer, occurred_at, trace_id, CAST(body AS jsonb),
    CAST($9 AS text), CAST($10 AS text),
    CASE WHEN CAST($9 AS text) = 'processing' THEN NULL ELSE now() END
FROM unnest(CAST($1 AS uuid[]), CAST($2 AS text[]), CAST($3 AS int[]), CAST($4 AS text[]),
    CAST($5 AS text[]), CAST($6 AS timestamptz[]), CAST($7 AS text[]), CAST($8 AS text[]))
    AS r(id, type, version, client_id, producer, occurred_at, trace_id, body)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


async def insert_received_many(
    session: Db,
    events: Sequence[Envelope],
    *,
    source: str,
    status: EventStatus = EventStatus.processing,
) -> set[uuid.UUID]:
    """``insert_received`` for many events in one fixed-shape statement: the ids newly stored.

    ``status=processed`` stores them already processed (``processed_at`` = the transaction's
    time, as ``mark_many`` would set it): for a caller that processes them in this same
    transaction, which then commits both or neither."""
    if not events:
        return set()
    rows = await (await driver(session)).fetch(
        _INSERT_RECEIVED_MANY_SQL,
        [e.id for e in events],
        [e.type for e in events],
        [e.version for e in events],
        [e.client_id for e in events],
        [e.producer for e in events],
        [e.occurred_at for e in events],
        [e.trace_id for e in events],
        [e.model_dump_json() for e in events],
        status.value,
        source,
    )
    return {row[0] for row in rows}


_STATUSES_SQL = "SELECT id, status FROM notifier.events WHERE id = ANY(CAST($1 AS uuid[]))"


async def statuses(session: Db, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventStatus]:
    if not ids:
        return {}
    rows = await (await driver(session)).fetch(_STATUSES_SQL, list(ids))
    return {row[0]: EventStatus(row[1]) for row in rows}


_MARK_MANY_SQL = """
UPDATE notifier.events SET status = CAST($2 AS text), error = NULL, processed_at = now()
WHERE id = ANY(CAST($1 AS uuid[]))
"""


async def mark_many(session: Db, ids: Sequence[uuid.UUID], status: EventStatus) -> None:
    if ids:
        await (await driver(session)).execute(_MARK_MANY_SQL, list(ids), status.value)


async def insert_rejected(
    session: AsyncSession,
    *,
    reject_id: uuid.UUID,
    body: Any,
    errors: list[dict[str, str]],
    source: str,
) -> None:
    """Store an invalid event; the same invalid body twice is stored once."""
    fields = body if isinstance(body, dict) else {}

    def text(key: str, limit: int) -> str | None:
        value = fields.get(key)
        return value[:limit] if isinstance(value, str) else None

    stmt = (
        insert(Event)
        .values(
            id=reject_id,
            type=text("type", 100),
            client_id=text("client_id", 100),
            producer=text("producer", 100),
            trace_id=text("trace_id", 200),
            body=body if isinstance(body, dict) else {"raw": body},
            status=EventStatus.rejected,
            source=source,
            error=errors,
            processed_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=[Event.id])
    )
    await session.execute(stmt)


async def mark(
    session: AsyncSession,
    event_id: uuid.UUID,
    status: EventStatus,
    *,
    error: Any = None,
    only_from: EventStatus | None = None,
) -> bool:
    """Set the event's outcome; with ``only_from``, only if it still has that status (checked
    by the UPDATE itself, so a concurrent commit is seen). False if no row was changed."""
    stmt = update(Event).where(Event.id == event_id)
    if only_from is not None:
        stmt = stmt.where(Event.status == only_from)
    result = await session.execute(
        stmt.values(status=status, error=error, processed_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    return await session.get(Event, event_id)


async def rejected_with_producer_id(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    """The newest rejected event whose body carried ``event_id`` as its ``id``. A rejected body
    is stored under an id of its own (``reject_id_for``: the producer's id stays free for the
    corrected event), so a producer asking for its id finds it here."""
    stmt = (
        select(Event)
        .where(Event.status == EventStatus.rejected, Event.body["id"].astext == str(event_id))
        .order_by(Event.received_at.desc(), Event.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def list_events(
    session: AsyncSession,
    *,
    status: EventStatus | None,
    type_: str | None,
    client_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    received: tuple[datetime | None, datetime | None] = (None, None),
    occurred: tuple[datetime | None, datetime | None] = (None, None),
) -> list[Event]:
    """Newest first; ``received`` / ``occurred``: half-open ranges [from, to), None = open."""
    stmt = select(Event)
    if status is not None:
        stmt = stmt.where(Event.status == status)
    if type_ is not None:
        stmt = stmt.where(Event.type == type_)
    if client_id is not None:
        stmt = stmt.where(Event.client_id == client_id)
    for column, (low, high) in ((Event.received_at, received), (Event.occurred_at, occurred)):
        if low is not None:
            stmt = stmt.where(column >= low)
        if high is not None:
            stmt = stmt.where(column < high)
    stmt = newest_first(stmt, Event.received_at, Event.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())
