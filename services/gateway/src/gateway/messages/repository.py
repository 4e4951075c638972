"""Every SQL query about messages (the idempotency store)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from notifier_common.db import DriverStatement
from notifier_common.pagination import newest_first
from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import MessageRecord, MessageStatus, ProviderEvent

M = MessageRecord


# not frozen: a frozen dataclass sets each field through object.__setattr__, ~6x the cost of
# building one per message (decision 0061)
@dataclass(slots=True)
class NewClaim:
    """One row to insert, or to take over when its key's stored state is retryable."""

    id: uuid.UUID
    idempotency_key: str
    request_hash: str
    request: dict[str, Any] | bytes | memoryview  # the message, or its UTF-8 JSON (stored as text)
    channel: str
    action: str
    provider: str | None
    recipient: str | None


@dataclass(slots=True)
class Claimed:
    id: uuid.UUID
    idempotency_key: str
    claim_token: uuid.UUID
    provider: str | None
    request: dict[str, Any] | None  # None from ``claim``: the caller holds the message


# One statement per chunk of a batch: the rows arrive as arrays (one bind per column, not per
# row), ordered by key so concurrent claimers lock in one order (no deadlocks). The order is
# the keys' code points (``COLLATE "C"``, whatever the database's collation): the service
# sorts a batch's keys the same way in Python before cutting it into statements (decision
# 0060), so a key in an earlier statement is never after one in a later statement. The requests
# travel as one value, their JSON joined by newlines (see ``join_json``), and are stored as
# text, byte for byte the document that was hashed (decision 0055). A stored key is
# taken over only with the same request hash and a retryable state: not final (transient_error,
# skipped: disabled) or a dead in-flight claim (in_progress past its lease).
_CLAIM = text(
    """
INSERT INTO gateway.messages AS m (id, idempotency_key, request_hash, request, channel, action,
    provider, recipient, status, attempts, claim_token, lease_until)
SELECT r.id, r.idempotency_key, r.request_hash, r.request,
    r.channel, r.action,
    r.provider, r.recipient, 'in_progress', 1, CAST(:token AS uuid),
    now() + make_interval(secs => CAST(:lease AS float8))
FROM unnest(CAST(:ids AS uuid[]), CAST(:keys AS text[]), CAST(:hashes AS text[]),
    string_to_array(convert_from(:requests, 'UTF8'), E'\\n'), CAST(:channels AS text[]),
    CAST(:actions AS text[]),
    CAST(:providers AS text[]), CAST(:recipients AS text[]))
    AS r(id, idempotency_key, request_hash, request, channel, action, provider, recipient)
ORDER BY r.idempotency_key COLLATE "C"
ON CONFLICT (idempotency_key) DO UPDATE SET
    status = 'in_progress',
    provider = excluded.provider,
    claim_token = excluded.claim_token,
    lease_until = excluded.lease_until,
    attempts = m.attempts + 1,
    updated_at = now()
WHERE m.request_hash = excluded.request_hash AND (
    m.status = 'transient_error'
    OR (m.status = 'skipped' AND m.code = 'disabled')
    OR (m.status = 'in_progress' AND m.lease_until < now()))
RETURNING m.id, m.idempotency_key, m.claim_token, m.provider
"""
).bindparams(
    bindparam("ids", type_=ARRAY(PGUUID(as_uuid=True))),
    bindparam("keys", type_=ARRAY(String())),
    bindparam("hashes", type_=ARRAY(String())),
    bindparam("requests", type_=LargeBinary()),
    bindparam("channels", type_=ARRAY(String())),
    bindparam("actions", type_=ARRAY(String())),
    bindparam("providers", type_=ARRAY(String())),
    bindparam("recipients", type_=ARRAY(String())),
    bindparam("token", type_=PGUUID(as_uuid=True)),
    bindparam("lease", type_=Float()),
)
#: the hot statements of a batch run on the asyncpg connection of the session's transaction
#: (decision 0107): the same SQL, without SQLAlchemy's per-statement and per-element work
_CLAIM_ON_DRIVER = DriverStatement.of(_CLAIM)


def join_json(documents: Iterable[bytes | memoryview]) -> bytes:
    """Compact JSON documents as one newline-separated value, split again in SQL with
    ``string_to_array(convert_from(:v, 'UTF8'), E'\\n')``. asyncpg encodes a ``bytea[]`` of 500
    documents (2.5 MB) element by element, growing its buffer in small steps, then copies it;
    one value is one copy. Compact JSON never holds a raw newline (strings escape it)."""
    return b"\n".join(documents)


async def claim(
    session: AsyncSession,
    rows: Sequence[NewClaim],
    *,
    lease: float,
    requests: bytes | memoryview | None = None,
) -> list[Claimed]:
    """Insert new keys and take over retryable ones, in one statement.

    A key inserted concurrently by another request makes this wait for that request's claim to
    commit, then see its ``in_progress`` row and skip it: exactly one claimer per key.

    ``requests``: the rows' request JSON already joined as :func:`join_json` would (e.g. a slice
    of a batch's buffer, decision 0060), else it is joined from the rows.
    """
    if not rows:
        return []
    if requests is None:
        requests = join_json(
            r.request if isinstance(r.request, bytes | memoryview) else orjson.dumps(r.request)
            for r in rows
        )
    params: dict[str, Any] = {
        "ids": [r.id for r in rows],
        "keys": [r.idempotency_key for r in rows],
        "hashes": [r.request_hash for r in rows],
        "requests": requests,
        "channels": [r.channel for r in rows],
        "actions": [r.action for r in rows],
        "providers": [r.provider for r in rows],
        "recipients": [r.recipient for r in rows],
        "token": uuid.uuid4(),  # one claim token per statement is enough to tell claimers apart
        "lease": lease,
    }
    return [
        Claimed(id=r[0], idempotency_key=r[1], claim_token=r[2], provider=r[3], request=None)
        for r in await _CLAIM_ON_DRIVER.fetch(session, params)
    ]


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


# The LIMIT changes no result (the arrays are as long as ``ids``). It is there for the plan: a
# prepared statement's generic plan cannot know how many rows unnest gives, and with a small
# ``gateway.messages`` (a new install, or the benchmark's warm-up; decision 0092) it made the
# join a hash join over a sequential scan of the table, a plan each pooled connection then kept
# however large the table grew. A LIMIT the planner cannot evaluate is estimated at a tenth of
# its input, one row: the plan is a nested loop over the primary key at any table size, which
# is also the plan for a 500-row batch on a large table (decision 0112).
_STORE = text(
    """
UPDATE gateway.messages AS m SET
    status = r.status,
    provider_message_id = r.provider_message_id,
    code = r.code,
    reason = r.reason,
    status_code = r.status_code,
    retry_after = r.retry_after,
    response_excerpt = r.response_excerpt,
    sent_at = r.sent_at,
    claim_token = NULL,
    lease_until = NULL,
    updated_at = now()
FROM (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]),
        CAST(:statuses AS text[]), CAST(:pmids AS text[]), CAST(:codes AS text[]),
        CAST(:reasons AS text[]), CAST(:status_codes AS int[]), CAST(:retry_afters AS float8[]),
        CAST(:excerpts AS text[]), CAST(:sent_ats AS timestamptz[]))
        AS u(id, claim_token, status, provider_message_id, code, reason, status_code,
             retry_after, response_excerpt, sent_at)
    LIMIT cardinality(CAST(:ids AS uuid[]))
) AS r
WHERE m.id = r.id AND m.claim_token = r.claim_token
"""
).bindparams(
    bindparam("ids", type_=ARRAY(PGUUID(as_uuid=True))),
    bindparam("tokens", type_=ARRAY(PGUUID(as_uuid=True))),
    bindparam("statuses", type_=ARRAY(String())),
    bindparam("pmids", type_=ARRAY(String())),
    bindparam("codes", type_=ARRAY(String())),
    bindparam("reasons", type_=ARRAY(Text())),
    bindparam("status_codes", type_=ARRAY(Integer())),
    bindparam("retry_afters", type_=ARRAY(Float())),
    bindparam("excerpts", type_=ARRAY(Text())),
    bindparam("sent_ats", type_=ARRAY(DateTime(timezone=True))),
)
_STORE_ON_DRIVER = DriverStatement.of(_STORE)


@dataclass(slots=True)
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
    """Write results of claimed rows (one statement); a stolen claim (lease ran out) is not
    overwritten."""
    if not results:
        return
    params = {
        "ids": [r.id for r in results],
        "tokens": [r.claim_token for r in results],
        "statuses": [r.status.value for r in results],
        "pmids": [r.provider_message_id for r in results],
        "codes": [r.code for r in results],
        "reasons": [r.reason for r in results],
        "status_codes": [r.status_code for r in results],
        "retry_afters": [r.retry_after for r in results],
        "excerpts": [r.response_excerpt for r in results],
        "sent_ats": [r.sent_at for r in results],
    }
    await _STORE_ON_DRIVER.execute(session, params)


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
    stmt = newest_first(stmt, M.created_at, M.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())


async def count_replayable(session: AsyncSession, provider: str) -> int:
    stmt = select(func.count()).where(
        M.provider == provider, M.status == MessageStatus.skipped, M.code == "disabled"
    )
    return int((await session.execute(stmt)).scalar_one())


_SCREENING = text(
    """
SELECT true AS switch, provider AS key, NULL AS scope, enabled
FROM gateway.provider_switches WHERE provider = ANY(:providers)
UNION ALL
SELECT false, address, scope, NULL
FROM gateway.suppressions WHERE address = ANY(:addresses)
"""
).bindparams(
    bindparam("providers", type_=ARRAY(String())), bindparam("addresses", type_=ARRAY(String()))
)
_SCREENING_ON_DRIVER = DriverStatement.of(_SCREENING)


@dataclass(frozen=True, slots=True)
class Screening:
    """What a claimed batch is screened against before dispatch."""

    switches: dict[str, bool]  # operator overrides by provider name
    suppressed: set[tuple[str, str]]  # (normalized address, scope) pairs stored


async def screening(
    session: AsyncSession, providers: Iterable[str], addresses: Iterable[str]
) -> Screening:
    """The providers' switch overrides and the addresses' suppressions, in one round trip."""
    names, wanted = sorted(set(providers)), sorted(set(addresses))
    out = Screening({}, set())
    if not names and not wanted:
        return out
    rows = await _SCREENING_ON_DRIVER.fetch(session, {"providers": names, "addresses": wanted})
    for is_switch, key, scope, enabled in rows:
        if is_switch:
            out.switches[key] = enabled
        else:
            out.suppressed.add((key, scope))
    return out


#: the provider event type of a message sent by a replay after it was ``skipped: disabled``
REPLAYED = "replayed"


class _ReplayedResult(Protocol):
    @property
    def message_id(self) -> uuid.UUID | None: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def provider_message_id(self) -> str | None: ...
    @property
    def outcome(self) -> Any: ...
    @property
    def code(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


async def record_replays(
    session: AsyncSession, results: Sequence[_ReplayedResult], *, at: datetime
) -> None:
    """One ``replayed`` provider event per replayed message (the status-changes feed)."""
    await session.execute(
        insert(ProviderEvent),
        [
            {
                "provider": r.provider or "",
                "type": REPLAYED,
                "message_id": r.message_id,
                "provider_message_id": r.provider_message_id,
                "reason": r.reason,
                "payload": {"outcome": str(r.outcome), "code": r.code},
                "occurred_at": at,
                "received_at": at,
            }
            for r in results
        ],
    )
