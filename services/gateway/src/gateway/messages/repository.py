"""Every SQL query about messages (the idempotency store)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import MessageRecord, MessageStatus

M = MessageRecord


@dataclass(frozen=True, slots=True)
class NewClaim:
    """One row to insert, or to take over when its key's stored state is retryable."""

    id: uuid.UUID
    idempotency_key: str
    request_hash: str
    request: dict[str, Any]
    channel: str
    action: str
    provider: str | None
    recipient: str | None


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    idempotency_key: str
    claim_token: uuid.UUID
    provider: str | None
    request: dict[str, Any]


def _retryable() -> Any:
    """Stored states a repeat of the key may take over: not final, or a dead in-flight claim."""
    return or_(
        M.status == MessageStatus.transient_error,
        and_(M.status == MessageStatus.skipped, M.code == "disabled"),
        and_(M.status == MessageStatus.in_progress, M.lease_until < func.now()),
    )


async def claim(session: AsyncSession, rows: Sequence[NewClaim], *, lease: float) -> list[Claimed]:
    """Insert new keys and take over retryable ones, in one statement.

    A key inserted concurrently by another request makes this wait for that request's claim to
    commit, then see its ``in_progress`` row and skip it: exactly one claimer per key.
    """
    if not rows:
        return []
    token = uuid.uuid4()  # one claim token per statement is enough to tell claimers apart
    params = [
        {
            "id": r.id,
            "idempotency_key": r.idempotency_key,
            "request_hash": r.request_hash,
            "request": r.request,
            "channel": r.channel,
            "action": r.action,
            "provider": r.provider,
            "recipient": r.recipient,
        }
        for r in sorted(rows, key=lambda r: r.idempotency_key)  # one lock order: no deadlocks
    ]
    base = insert(M).values(
        status=MessageStatus.in_progress,
        attempts=1,
        claim_token=token,
        lease_until=func.now() + timedelta(seconds=lease),
    )
    stmt = base.on_conflict_do_update(
        index_elements=[M.idempotency_key],
        set_={
            "status": MessageStatus.in_progress,
            "provider": base.excluded.provider,
            "claim_token": base.excluded.claim_token,
            "lease_until": base.excluded.lease_until,
            "attempts": M.attempts + 1,
            "updated_at": func.now(),
        },
        where=and_(M.request_hash == base.excluded.request_hash, _retryable()),
    ).returning(M.id, M.idempotency_key, M.claim_token, M.provider, M.request)
    # executemany + RETURNING: SQLAlchemy batches the rows into multi-row VALUES statements
    conn = await session.connection()
    result = await conn.execute(stmt, params)
    return [Claimed(*row) for row in result.all()]


async def claim_replayable(
    session: AsyncSession, provider: str, *, limit: int, lease: float
) -> list[Claimed]:
    """Take up to ``limit`` messages answered ``skipped: disabled`` by ``provider``."""
    pick = (
        select(M.id)
        .where(M.provider == provider, M.status == MessageStatus.skipped, M.code == "disabled")
        .order_by(M.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(M)
        .where(M.id.in_(pick))
        .values(
            status=MessageStatus.in_progress,
            claim_token=uuid.uuid4(),
            lease_until=func.now() + timedelta(seconds=lease),
            attempts=M.attempts + 1,
            updated_at=func.now(),
        )
        .returning(M.id, M.idempotency_key, M.claim_token, M.provider, M.request)
    )
    return [Claimed(*row) for row in (await session.execute(stmt)).all()]


_STORE = (
    update(M)
    .where(M.id == bindparam("b_id"), M.claim_token == bindparam("b_token"))
    .values(
        status=bindparam("b_status"),
        provider_message_id=bindparam("b_pmid"),
        code=bindparam("b_code"),
        reason=bindparam("b_reason"),
        status_code=bindparam("b_status_code"),
        retry_after=bindparam("b_retry_after"),
        response_excerpt=bindparam("b_excerpt"),
        sent_at=bindparam("b_sent_at"),
        claim_token=None,
        lease_until=None,
        updated_at=func.now(),
    )
)


@dataclass(frozen=True, slots=True)
class StoredResult:
    id: uuid.UUID
    claim_token: uuid.UUID
    status: MessageStatus
    provider_message_id: str | None
    code: str | None
    reason: str | None
    status_code: int | None
    retry_after: float | None
    response_excerpt: str | None
    sent_at: datetime | None


async def store_results(session: AsyncSession, results: Sequence[StoredResult]) -> None:
    """Write results of claimed rows (one executemany); a stolen claim (lease ran out) is not
    overwritten."""
    if not results:
        return
    params = [
        {
            "b_id": r.id,
            "b_token": r.claim_token,
            "b_status": r.status,
            "b_pmid": r.provider_message_id,
            "b_code": r.code,
            "b_reason": r.reason,
            "b_status_code": r.status_code,
            "b_retry_after": r.retry_after,
            "b_excerpt": r.response_excerpt,
            "b_sent_at": r.sent_at,
        }
        for r in results
    ]
    conn = await session.connection()
    await conn.execute(_STORE, params)


async def by_keys(session: AsyncSession, keys: Sequence[str]) -> list[MessageRecord]:
    if not keys:
        return []
    stmt = select(M).where(M.idempotency_key.in_(keys))
    return list((await session.execute(stmt)).scalars())


async def get(session: AsyncSession, message_id: uuid.UUID) -> MessageRecord | None:
    return await session.get(M, message_id)


async def list_messages(
    session: AsyncSession,
    *,
    idempotency_key: str | None,
    provider: str | None,
    status: MessageStatus | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[MessageRecord]:
    """Newest first, keyset-paginated on (created_at, id)."""
    stmt = select(M)
    if idempotency_key is not None:
        stmt = stmt.where(M.idempotency_key == idempotency_key)
    if provider is not None:
        stmt = stmt.where(M.provider == provider)
    if status is not None:
        stmt = stmt.where(M.status == status)
    if after is not None:
        at, last = after
        stmt = stmt.where(or_(M.created_at < at, and_(M.created_at == at, M.id < last)))
    stmt = stmt.order_by(M.created_at.desc(), M.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def count_replayable(session: AsyncSession, provider: str) -> int:
    stmt = select(func.count()).where(
        M.provider == provider, M.status == MessageStatus.skipped, M.code == "disabled"
    )
    return int((await session.execute(stmt)).scalar_one())
