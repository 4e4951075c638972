"""Every SQL query about provider events (and the message status changes they cause)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import MessageRecord, MessageStatus, ProviderEvent


async def messages_by_provider_id(
    session: AsyncSession, provider: str, provider_message_ids: Collection[str]
) -> dict[str, tuple[uuid.UUID, str | None]]:
    """provider_message_id -> (message id, first recipient)."""
    if not provider_message_ids:
        return {}
    stmt = select(
        MessageRecord.provider_message_id, MessageRecord.id, MessageRecord.recipient
    ).where(
        MessageRecord.provider == provider,
        MessageRecord.provider_message_id.in_(sorted(provider_message_ids)),
    )
    rows = (await session.execute(stmt)).all()
    return {pmid: (mid, rcpt) for pmid, mid, rcpt in rows if pmid is not None}


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert; events already stored (same provider + external id) are skipped. Returns the
    indexes of ``rows`` that were new (``rows`` hold distinct external ids)."""
    if not rows:
        return []
    stmt = (
        insert(ProviderEvent)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=[ProviderEvent.provider, ProviderEvent.external_id])
        .returning(ProviderEvent.external_id)
    )
    inserted = set((await session.execute(stmt)).scalars())
    return [
        i
        for i, row in enumerate(rows)
        if row["external_id"] is None or row["external_id"] in inserted
    ]


_ALLOWED_FROM: dict[MessageStatus, tuple[MessageStatus, ...]] = {
    MessageStatus.delivered: (MessageStatus.accepted,),
    MessageStatus.bounced: (MessageStatus.accepted, MessageStatus.delivered),
    MessageStatus.complained: (MessageStatus.accepted, MessageStatus.delivered),
}


async def set_status(
    session: AsyncSession, message_ids: Collection[uuid.UUID], status: MessageStatus
) -> int:
    """Move sent messages to a webhook-reported status (never backwards)."""
    if not message_ids:
        return 0
    stmt = (
        update(MessageRecord)
        .where(
            MessageRecord.id.in_(list(message_ids)),
            MessageRecord.status.in_(_ALLOWED_FROM[status]),
        )
        .values(status=status, status_changed_at=func.now(), updated_at=func.now())
        .returning(MessageRecord.id)
    )
    return len((await session.execute(stmt)).all())
