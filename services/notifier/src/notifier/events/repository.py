"""Every SQL query about events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from notifier_common.events import Envelope
from notifier_common.pagination import newest_first
from sqlalchemy import select, text, update
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


_INSERT_RECEIVED_MANY_SQL = """
INSERT INTO notifier.events (id, type, version, client_id, producer, occurred_at, trace_id, body,
    status, source)
SELECT id, type, version, client_id, producer, occurred_at, trace_id, CAST(body AS jsonb),
    'processing', :source
FROM unnest(CAST(:id AS uuid[]), CAST(:type AS text[]), CAST(:version AS int[]),
    CAST(:client_id AS text[]), CAST(:producer AS text[]), CAST(:occurred_at AS timestamptz[]),
    CAST(:trace_id AS text[]), CAST(:body AS text[]))
    AS r(id, type, version, client_id, producer, occurred_at, trace_id, body)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


async def insert_received_many(
    session: AsyncSession, events: Sequence[Envelope], *, source: str
) -> set[uuid.UUID]:
    """``insert_received`` for many events in one fixed-shape statement: the ids newly stored."""
    if not events:
        return set()
    params = {
        "id": [e.id for e in events],
        "type": [e.type for e in events],
        "version": [e.version for e in events],
        "client_id": [e.client_id for e in events],
        "producer": [e.producer for e in events],
        "occurred_at": [e.occurred_at for e in events],
        "trace_id": [e.trace_id for e in events],
        "body": [e.model_dump_json() for e in events],
        "source": source,
    }
    result = await session.execute(text(_INSERT_RECEIVED_MANY_SQL), params)
    return {row[0] for row in result}


async def statuses(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventStatus]:
    if not ids:
        return {}
    result = await session.execute(
        text("SELECT id, status FROM notifier.events WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": list(ids)},
    )
    return {row[0]: EventStatus(row[1]) for row in result}


async def mark_many(session: AsyncSession, ids: Sequence[uuid.UUID], status: EventStatus) -> None:
    if ids:
        await session.execute(
            text(
                "UPDATE notifier.events SET status = :status, error = NULL, processed_at = now()"
                " WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(ids), "status": status.value},
        )


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
    session: AsyncSession, event_id: uuid.UUID, status: EventStatus, *, error: Any = None
) -> None:
    await session.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(status=status, error=error, processed_at=datetime.now(UTC))
    )


async def get(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    return await session.get(Event, event_id)


async def list_events(
    session: AsyncSession,
    *,
    status: EventStatus | None,
    type_: str | None,
    client_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Event]:
    stmt = select(Event)
    if status is not None:
        stmt = stmt.where(Event.status == status)
    if type_ is not None:
        stmt = stmt.where(Event.type == type_)
    if client_id is not None:
        stmt = stmt.where(Event.client_id == client_id)
    stmt = newest_first(stmt, Event.received_at, Event.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())
