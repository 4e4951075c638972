"""Every SQL query about events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
