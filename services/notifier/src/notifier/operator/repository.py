"""Every SQL query of the operator API: history with keyset pagination, timeline rows, bulk
retry. Writes only flush; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from notifier_common.pagination import newest_first
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import Attempt, Event, Letter, LetterStatus


@dataclass(frozen=True, kw_only=True)
class LetterQuery:
    """History filters; ranges are half-open ``[from, to)``."""

    client_id: str | None = None
    letter: str | None = None
    status: Sequence[LetterStatus] = field(default_factory=tuple)
    channel: str | None = None
    event_id: uuid.UUID | None = None
    origin: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    send_from: datetime | None = None
    send_to: datetime | None = None
    sent_from: datetime | None = None
    sent_to: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        equal: list[tuple[Any, Any]] = [
            (Letter.client_id, self.client_id),
            (Letter.letter, self.letter),
            (Letter.channel, self.channel),
            (Letter.event_id, self.event_id),
            (Letter.origin, self.origin),
        ]
        out += [column == value for column, value in equal if value is not None]
        if self.status:
            out.append(Letter.status.in_(list(self.status)))
        ranges: list[tuple[Any, datetime | None, datetime | None]] = [
            (Letter.created_at, self.created_from, self.created_to),
            (Letter.send_at, self.send_from, self.send_to),
            (Letter.sent_at, self.sent_from, self.sent_to),
        ]
        for column, low, high in ranges:
            if low is not None:
                out.append(column >= low)
            if high is not None:
                out.append(column < high)
        return out


async def list_letters(
    session: AsyncSession,
    query: LetterQuery,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Letter]:
    """Newest first, ``(created_at, id)`` descending; keyset after the cursor, no OFFSET."""
    stmt = select(Letter).where(*query.conditions())
    stmt = newest_first(stmt, Letter.created_at, Letter.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())


async def get_letter(session: AsyncSession, letter_id: int, *, lock: bool = False) -> Letter | None:
    stmt = select(Letter).where(Letter.id == letter_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def attempts_of(session: AsyncSession, letter_id: int) -> list[Attempt]:
    stmt = (
        select(Attempt)
        .where(Attempt.letter_id == letter_id)
        .order_by(Attempt.try_number, Attempt.id)
    )
    return list((await session.execute(stmt)).scalars())


async def resends_of(session: AsyncSession, letter_id: int) -> list[Letter]:
    stmt = select(Letter).where(Letter.resend_of == letter_id).order_by(Letter.id)
    return list((await session.execute(stmt)).scalars())


async def get_event(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    return await session.get(Event, event_id)


async def count_letters(session: AsyncSession, query: LetterQuery) -> int:
    stmt = select(func.count()).select_from(Letter).where(*query.conditions())
    return int((await session.execute(stmt)).scalar_one())


async def reschedule(
    session: AsyncSession, query: LetterQuery, *, now: datetime, limit: int
) -> list[int]:
    """Move matching letters back to ``scheduled`` (due now, attempts reset), skipping rows a
    worker holds. Returns the ids moved."""
    pick = (
        select(Letter.id)
        .where(*query.conditions())
        .order_by(Letter.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Letter)
        .where(Letter.id.in_(pick), Letter.status.in_(list(query.status)))
        .values(
            status=LetterStatus.scheduled,
            send_at=now,
            attempts=0,
            lease_until=None,
            lease_token=None,
            expires_at=None,
            updated_at=now,
        )
        .returning(Letter.id)
    )
    return sorted((await session.execute(stmt)).scalars())


async def cancel_if_scheduled(
    session: AsyncSession, letter_id: int, *, reason: str, now: datetime
) -> bool:
    """Atomic ``scheduled -> cancelled``; False when the row is in any other state."""
    stmt = (
        update(Letter)
        .where(Letter.id == letter_id, Letter.status == LetterStatus.scheduled)
        .values(status=LetterStatus.cancelled, cancel_reason=reason, updated_at=now)
        .returning(Letter.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def insert_letter(session: AsyncSession, values: dict[str, Any]) -> Letter:
    letter = Letter(**values)
    session.add(letter)
    await session.flush()
    return letter


async def pending_matching(
    session: AsyncSession,
    *,
    letters: Sequence[str],
    column: str,
    value: str,
    occurred_at: datetime,
) -> list[Letter]:
    """What a cancelling event would cancel (read only; the engine's rule)."""
    target = Letter.client_id if column == "client_id" else Letter.contract_id
    stmt = (
        select(Letter)
        .where(
            Letter.letter.in_(list(letters)),
            target == value,
            Letter.status.in_([LetterStatus.scheduled, LetterStatus.sending]),
            Letter.triggered_at <= occurred_at,
        )
        .order_by(Letter.id)
        .limit(1000)
    )
    return list((await session.execute(stmt)).scalars())
