"""Every SQL query about suppressions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.messages.repository import REPLAYED
from gateway.models import MessageRecord, MessageStatus, ProviderEvent, Suppression


@dataclass(frozen=True, slots=True)
class NewSuppression:
    address: str
    scope: str
    reason: str
    source: str
    detail: str | None = None


async def add_many(session: AsyncSession, rows: Sequence[NewSuppression]) -> int:
    """Insert; an existing (address, scope) is kept as it is. Returns how many were new."""
    if not rows:
        return 0
    unique = {(r.address, r.scope): r for r in rows}
    stmt = (
        insert(Suppression)
        .values(
            [
                {
                    "address": r.address,
                    "scope": r.scope,
                    "reason": r.reason,
                    "source": r.source,
                    "detail": r.detail,
                }
                for r in unique.values()
            ]
        )
        .on_conflict_do_nothing(index_elements=[Suppression.address, Suppression.scope])
        .returning(Suppression.id)
    )
    return len((await session.execute(stmt)).all())


async def list_page(
    session: AsyncSession,
    *,
    address: str | None,
    scope: str | None,
    since: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Suppression]:
    """Oldest first (a sync feed), keyset-paginated on (created_at, id)."""
    stmt = select(Suppression)
    if address is not None:
        stmt = stmt.where(Suppression.address == address)
    if scope is not None:
        stmt = stmt.where(Suppression.scope == scope)
    if since is not None:
        stmt = stmt.where(Suppression.created_at >= since)
    if after is not None:
        at, last = after
        stmt = stmt.where(
            or_(
                Suppression.created_at > at,
                and_(Suppression.created_at == at, Suppression.id > last),
            )
        )
    stmt = stmt.order_by(Suppression.created_at, Suppression.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def delete_one(session: AsyncSession, suppression_id: int) -> bool:
    stmt = delete(Suppression).where(Suppression.id == suppression_id).returning(Suppression.id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


@dataclass(frozen=True, slots=True)
class StatusChangeRow:
    event_id: int
    received_at: datetime
    message_id: uuid.UUID
    idempotency_key: str
    status: MessageStatus
    status_changed_at: datetime | None
    event: str
    provider: str | None
    provider_message_id: str | None
    code: str | None
    reason: str | None


FINAL_DELIVERY = (MessageStatus.delivered, MessageStatus.bounced, MessageStatus.complained)


async def status_changes(
    session: AsyncSession,
    *,
    since: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[StatusChangeRow]:
    """Events that moved a message, oldest first on (received_at, id), with the message's
    current status (a later event for the same message shows the same, newest, status):
    webhooks that made it delivered / bounced / complained, and replays of messages that were
    ``skipped: disabled`` (any status)."""
    e, m = ProviderEvent, MessageRecord
    stmt = (
        select(
            e.id,
            e.received_at,
            m.id,
            m.idempotency_key,
            m.status,
            m.status_changed_at,
            e.type,
            m.provider,
            m.provider_message_id,
            m.code,
            m.reason,
        )
        .join(m, m.id == e.message_id)
        .where(
            or_(
                and_(
                    e.type.in_(["delivered", "bounced", "complained"]),
                    m.status.in_(FINAL_DELIVERY),
                ),
                e.type == REPLAYED,
            )
        )
    )
    if since is not None:
        stmt = stmt.where(e.received_at >= since)
    if after is not None:
        at, last = after
        stmt = stmt.where(or_(e.received_at > at, and_(e.received_at == at, e.id > last)))
    stmt = stmt.order_by(e.received_at, e.id).limit(limit)
    return [StatusChangeRow(*row) for row in (await session.execute(stmt)).all()]
