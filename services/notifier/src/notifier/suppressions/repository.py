"""Every SQL query about suppressions, sync watermarks and letters' delivery status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from notifier_common.errors import Conflict
from notifier_common.pagination import newest_first
from sqlalchemy import ColumnElement, Table, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import (
    Letter,
    Suppression,
    SuppressionReason,
    SuppressionSource,
    SyncWatermark,
)


@dataclass(frozen=True, slots=True)
class NewSuppression:
    address: str  # lower-cased on insert
    scope: str
    reason: SuppressionReason
    source: SuppressionSource
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    letter_id: int
    status: str
    changed_at: datetime


async def scopes_of(
    session: AsyncSession, addresses: Sequence[str]
) -> dict[str, dict[str, SuppressionReason]]:
    """``{address: {scope: reason}}`` for these lower-cased addresses, in one query."""
    if not addresses:
        return {}
    stmt = select(Suppression.address, Suppression.scope, Suppression.reason).where(
        Suppression.address == func.any(bindparam("addrs", sorted(set(addresses))))
    )
    out: dict[str, dict[str, SuppressionReason]] = {}
    for address, scope, reason in (await session.execute(stmt)).all():
        out.setdefault(address, {})[scope] = reason
    return out


def normal_address(address: str) -> str:
    """How an address is stored and compared: stripped and lower-cased."""
    return address.strip().lower()


def _insert_keeping_first(rows: Sequence[NewSuppression]) -> Insert:
    """INSERT of ``rows`` (one per (address, scope), addresses normalised) that leaves an
    existing (address, scope) as it is: its first reason stays."""
    return (
        insert(Suppression)
        .values(
            [
                {
                    "address": normal_address(r.address),
                    "scope": r.scope,
                    "reason": r.reason,
                    "source": r.source,
                    "detail": r.detail,
                }
                for r in rows
            ]
        )
        .on_conflict_do_nothing(index_elements=[Suppression.address, Suppression.scope])
    )


async def add_many(session: AsyncSession, rows: Sequence[NewSuppression]) -> int:
    """Insert; an existing (address, scope) keeps its first reason. Returns how many were new."""
    unique = {(normal_address(r.address), r.scope): r for r in rows}
    if not unique:
        return 0
    stmt = _insert_keeping_first(list(unique.values())).returning(Suppression.id)
    return len((await session.execute(stmt)).all())


@dataclass(frozen=True, kw_only=True)
class SuppressionQuery:
    """Filters of the operator's list; ``address`` is compared stripped and lower-cased."""

    address: str | None = None
    scope: str | None = None
    reasons: Sequence[SuppressionReason] = field(default_factory=tuple)
    source: SuppressionSource | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.address is not None:
            out.append(Suppression.address == normal_address(self.address))
        if self.scope is not None:
            out.append(Suppression.scope == self.scope)
        if self.reasons:
            out.append(Suppression.reason.in_(list(self.reasons)))
        if self.source is not None:
            out.append(Suppression.source == self.source)
        return out


async def list_suppressions(
    session: AsyncSession,
    query: SuppressionQuery,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Suppression]:
    """Newest first, ``(created_at, id)`` descending; keyset after the cursor."""
    stmt = select(Suppression).where(*query.conditions())
    stmt = newest_first(stmt, Suppression.created_at, Suppression.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())


async def add_or_get(session: AsyncSession, row: NewSuppression) -> tuple[Suppression, bool]:
    """Insert one (address lower-cased) or, when its (address, scope) exists, get that row
    unchanged (the first reason stays, as :func:`add_many`). True when it is new. A row lifted
    between the two statements is inserted again (the next try finds no conflict)."""
    address = normal_address(row.address)
    insert_one = _insert_keeping_first([row]).returning(Suppression)
    existing = select(Suppression).where(
        Suppression.address == address, Suppression.scope == row.scope
    )
    for _ in range(3):
        added = (await session.execute(insert_one)).scalar_one_or_none()
        if added is not None:
            return added, True
        found = (await session.execute(existing)).scalar_one_or_none()
        if found is not None:
            return found, False
    raise Conflict(f"suppression of {address} ({row.scope}) is changing concurrently; try again")


async def get_suppression(session: AsyncSession, suppression_id: int) -> Suppression | None:
    return await session.get(Suppression, suppression_id)


async def delete_suppression(session: AsyncSession, suppression_id: int) -> bool:
    stmt = delete(Suppression).where(Suppression.id == suppression_id).returning(Suppression.id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def letter_for_link(session: AsyncSession, letter_id: int) -> Letter | None:
    return await session.get(Letter, letter_id)


async def watermark(session: AsyncSession, feed: str) -> datetime | None:
    stmt = select(SyncWatermark.watermark).where(SyncWatermark.feed == feed)
    return (await session.execute(stmt)).scalar_one_or_none()


async def advance_watermark(session: AsyncSession, feed: str, at: datetime) -> None:
    """Move the feed's watermark forward (never back)."""
    stmt = insert(SyncWatermark).values(feed=feed, watermark=at, updated_at=func.now())
    stmt = stmt.on_conflict_do_update(
        index_elements=[SyncWatermark.feed],
        set_={
            "watermark": func.greatest(SyncWatermark.watermark, stmt.excluded.watermark),
            "updated_at": func.now(),
        },
    )
    await session.execute(stmt)


async def set_delivery_status(session: AsyncSession, changes: Sequence[StatusChange]) -> None:
    """Apply status changes in one executemany; a change older than the letter's is ignored."""
    newest: dict[int, StatusChange] = {}
    for change in changes:
        known = newest.get(change.letter_id)
        if known is None or known.changed_at <= change.changed_at:
            newest[change.letter_id] = change
    if not newest:
        return
    t = Letter.__table__
    assert isinstance(t, Table)
    stmt = (
        update(t)
        .where(
            t.c.id == bindparam("letter_id"),
            or_(t.c.delivery_updated_at.is_(None), t.c.delivery_updated_at <= bindparam("at")),
        )
        .values(delivery_status=bindparam("new_status"), delivery_updated_at=bindparam("at"))
    )
    params = [
        {"letter_id": c.letter_id, "new_status": c.status, "at": c.changed_at}
        for c in newest.values()
    ]
    await session.execute(stmt, params)


@dataclass(frozen=True, slots=True)
class Replayed:
    """A message the gateway sent by a replay after answering it ``skipped: disabled``: what
    its letter becomes (``status``), and the attempt that records it."""

    letter_id: int
    status: str  # sent | failed | scheduled | skipped
    outcome: str  # ok | permanent | transient | skipped
    at: datetime
    provider: str | None
    provider_message_id: str | None
    code: str | None
    error: str | None


_REFLECT_REPLAYS_SQL = """
WITH r AS (
    SELECT * FROM unnest(CAST(:id AS bigint[]), CAST(:status AS text[]),
        CAST(:outcome AS text[]), CAST(:at AS timestamptz[]), CAST(:provider AS text[]),
        CAST(:pmid AS text[]), CAST(:code AS text[]), CAST(:error AS text[]))
        AS r(id, status, outcome, at, provider, pmid, code, error)
), moved AS (
    UPDATE notifier.letters AS l
    SET status = r.status,
        sent_at = CASE WHEN r.status = 'sent' THEN r.at ELSE l.sent_at END,
        send_at = CASE WHEN r.status = 'scheduled' THEN now() ELSE l.send_at END,
        provider_message_id = COALESCE(r.pmid, l.provider_message_id),
        last_error = CASE WHEN r.status IN ('failed', 'scheduled') THEN r.error
                          ELSE l.last_error END,
        skip_reason = CASE WHEN r.status = 'skipped' THEN r.code ELSE NULL END,
        attempts = l.attempts + 1,
        updated_at = now()
    FROM r
    WHERE l.id = r.id AND l.status = 'skipped' AND l.skip_reason = 'disabled'
    RETURNING l.id, l.attempts, r.outcome, r.code, r.error, r.provider, r.pmid
)
INSERT INTO notifier.attempts (letter_id, try_number, outcome, code, error, provider,
    provider_message_id, created_at)
SELECT id, attempts, outcome, 'replayed' || COALESCE(': ' || code, ''), error, provider, pmid,
    now()
FROM moved
RETURNING letter_id
"""


async def reflect_replays(session: AsyncSession, replays: Sequence[Replayed]) -> list[int]:
    """Move letters recorded ``skipped`` (``disabled``) to what the gateway's replay made of
    them, with an attempt each; a letter no longer in that state (applied before, resent,
    …) is left alone. One statement; the ids of the letters moved."""
    if not replays:
        return []
    newest: dict[int, Replayed] = {}
    for r in replays:
        if r.letter_id not in newest or newest[r.letter_id].at <= r.at:
            newest[r.letter_id] = r
    rows = list(newest.values())
    result = await session.execute(
        text(_REFLECT_REPLAYS_SQL),
        {
            "id": [r.letter_id for r in rows],
            "status": [r.status for r in rows],
            "outcome": [r.outcome for r in rows],
            "at": [r.at for r in rows],
            "provider": [r.provider for r in rows],
            "pmid": [r.provider_message_id for r in rows],
            "code": [r.code for r in rows],
            "error": [r.error for r in rows],
        },
    )
    return list(result.scalars())
