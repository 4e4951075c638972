"""Every SQL query of the letter engine. Only flushes; the caller's session_scope commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from notifier_common.db import Db, DriverStatement, driver
from notifier_common.pagination import newest_first
from sqlalchemy import String, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import (
    Attempt,
    Letter,
    LetterCancellation,
    LetterSetting,
    LetterSettingAudit,
    LetterState,
    LetterStatus,
)

PENDING = (LetterStatus.scheduled, LetterStatus.sending)


# not frozen: a frozen dataclass sets each field through ``object.__setattr__`` (1.3 against
# 0.2 µs for these 12 fields), and a drain builds two per letter (decision 0102)
@dataclass(slots=True)
class Claimed:
    """A due letter this transaction holds locked (``FOR UPDATE``) until it sends and records
    it: the claim is the row lock (decisions 0090, 0103)."""

    id: int
    letter: str
    client_id: str
    contract_id: str | None
    channel: str
    recipient: str
    locale: str
    context: dict[str, Any]
    attempts: int
    send_at: datetime
    expires_at: datetime | None


# ---- event processing ---------------------------------------------------------------------


async def lock_client(session: AsyncSession, client_id: str) -> None:
    """Serialise triggers and cancellations of one client until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"notifier.letters:{client_id}"},
    )


async def latest_cancellations(
    session: AsyncSession, letters: Sequence[str], subjects: Sequence[str]
) -> list[LetterCancellation]:
    if not letters or not subjects:
        return []
    stmt = select(LetterCancellation).where(
        LetterCancellation.letter.in_(letters), LetterCancellation.subject.in_(subjects)
    )
    return list((await session.execute(stmt)).scalars())


async def record_cancellations(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upsert (letter, subject) -> the cancelling event; ``occurred_at`` only moves forward."""
    if not rows:
        return
    stmt = insert(LetterCancellation).values(list(rows))
    stmt = stmt.on_conflict_do_update(
        index_elements=[LetterCancellation.letter, LetterCancellation.subject],
        set_={
            "occurred_at": stmt.excluded.occurred_at,
            "event_id": stmt.excluded.event_id,
            "event_type": stmt.excluded.event_type,
            "updated_at": func.now(),
        },
        where=LetterCancellation.occurred_at < stmt.excluded.occurred_at,
    )
    await session.execute(stmt)


_CANCEL_SQL = """
WITH target AS (
    SELECT id FROM notifier.letters
    WHERE letter = ANY(:letters) AND {column} = :value
      AND status IN ('scheduled', 'sending') AND triggered_at <= :occurred_at
    ORDER BY id
    FOR UPDATE
)
UPDATE notifier.letters AS l
SET status = 'cancelled', cancel_reason = :reason, cancelled_by_event_id = :event_id,
    lease_until = NULL, lease_token = NULL, updated_at = :now
FROM target
WHERE l.id = target.id
RETURNING l.id
"""


async def cancel_pending(
    session: AsyncSession,
    *,
    letters: Sequence[str],
    column: str,
    value: str,
    occurred_at: datetime,
    event_id: uuid.UUID,
    reason: str,
    now: datetime,
) -> list[int]:
    """Cancel scheduled *and* sending letters (rows locked in id order, like the drain does).

    A row a drain holds is waited for: if it got sent meanwhile, it no longer matches.
    """
    if column not in ("client_id", "contract_id"):
        raise ValueError(column)
    stmt = text(_CANCEL_SQL.format(column=column)).bindparams(
        bindparam("letters", type_=ARRAY(String())),
    )
    result = await session.execute(
        stmt,
        {
            "letters": list(letters),
            "value": value,
            "occurred_at": occurred_at,
            "reason": reason[:200],
            "event_id": event_id,
            "now": now,
        },
    )
    return [row[0] for row in result]


async def get_states(
    session: AsyncSession, letters: Sequence[str], client_id: str
) -> dict[str, LetterState]:
    if not letters:
        return {}
    stmt = select(LetterState).where(
        LetterState.letter.in_(letters), LetterState.client_id == client_id
    )
    return {s.letter: s for s in (await session.execute(stmt)).scalars()}


async def save_states(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert(LetterState).values(list(rows))
    stmt = stmt.on_conflict_do_update(
        index_elements=[LetterState.letter, LetterState.client_id],
        set_={
            "armed": stmt.excluded.armed,
            "last_fired_at": stmt.excluded.last_fired_at,
            "last_event_at": stmt.excluded.last_event_at,
            "last_level": stmt.excluded.last_level,
            "updated_at": func.now(),
        },
    )
    await session.execute(stmt)


async def insert_letters(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[int, LetterStatus, datetime]]:
    """INSERT ... ON CONFLICT DO NOTHING (unique event/letter/recipient and dedup key)."""
    if not rows:
        return []
    stmt = (
        insert(Letter)
        .values(list(rows))
        .on_conflict_do_nothing()
        .returning(Letter.id, Letter.status, Letter.send_at)
    )
    return [(r.id, r.status, r.send_at) for r in (await session.execute(stmt)).all()]


# ---- event processing, many events per statement (the worker's group commit) ----------------
# Statements of a fixed shape (one array per column), run on the transaction's asyncpg
# connection: prepared once per connection, whatever the number of rows, and without the ORM's
# per-statement work. See docs/decisions/0040-group-commit-of-events.md and 0070.


async def lock_clients(session: Db, client_ids: Sequence[str]) -> None:
    """``lock_client`` for several clients in one round trip, in one stable order (by lock key),
    so two transactions locking overlapping sets cannot deadlock on these locks."""
    if not client_ids:
        return
    keys = [f"notifier.letters:{c}" for c in sorted(set(client_ids))]
    await (await driver(session)).fetchval(_LOCK_CLIENTS_SQL, keys)


_LOCK_CLIENTS_SQL = """
SELECT count(pg_advisory_xact_lock(k.h)) FROM (
    SELECT hashtextextended(key, 0) AS h FROM unnest(CAST($1 AS text[])) AS key
    GROUP BY 1 ORDER BY 1
) AS k
"""


@dataclass(frozen=True, slots=True)
class StateRow:
    """A ``letter_states`` row as the decisions read it."""

    letter: str
    client_id: str
    armed: bool
    last_fired_at: datetime | None
    last_event_at: datetime | None
    last_level: Decimal | None


@dataclass(frozen=True, slots=True)
class CancellationRow:
    """A ``letter_cancellations`` row as the decisions read it."""

    letter: str
    subject: str
    occurred_at: datetime
    event_id: uuid.UUID
    event_type: str


# One index probe per (letter, key) pair the batch's events need, each in a ``LATERAL``
# subquery the planner cannot flatten (decision 0087). ``letter = ANY($1) AND client_id =
# ANY($2)`` on the primary key read the cross product of every letter and every key of the
# batch, and its generic plan (the one a prepared statement settles on) costed the two arrays as
# 10 elements each: 100 probes against a sequential scan, so every table under ~30,000 rows was
# scanned whole, per batch.
_DECISION_READS_SQL = """
SELECT true AS is_state, s.letter, s.client_id AS key, s.armed, s.last_fired_at AS at1,
    s.last_event_at AS at2, s.last_level, NULL::uuid AS event_id, NULL::text AS event_type
FROM unnest(CAST($1 AS text[]), CAST($2 AS text[])) AS p(letter, key)
CROSS JOIN LATERAL (
    SELECT * FROM notifier.letter_states
    WHERE letter = p.letter AND client_id = p.key
    OFFSET 0
) AS s
UNION ALL
SELECT false, c.letter, c.subject, NULL, c.occurred_at, NULL, NULL, c.event_id, c.event_type
FROM unnest(CAST($3 AS text[]), CAST($4 AS text[])) AS p(letter, key)
CROSS JOIN LATERAL (
    SELECT * FROM notifier.letter_cancellations
    WHERE letter = p.letter AND subject = p.key
    OFFSET 0
) AS c
"""


async def decision_reads(
    session: Db,
    *,
    states: Iterable[tuple[str, str]],
    cancellations: Iterable[tuple[str, str]],
) -> tuple[dict[tuple[str, str], StateRow], list[CancellationRow]]:
    """In one statement: the frequency states of these (letter, client_id) pairs, by pair, and
    the remembered cancellations of these (letter, subject) pairs."""
    wanted_states, wanted_cancellations = sorted(set(states)), sorted(set(cancellations))
    if not wanted_states and not wanted_cancellations:
        return {}, []
    rows = await (await driver(session)).fetch(
        _DECISION_READS_SQL,
        [letter for letter, _ in wanted_states],
        [key for _, key in wanted_states],
        [letter for letter, _ in wanted_cancellations],
        [key for _, key in wanted_cancellations],
    )
    found: dict[tuple[str, str], StateRow] = {}
    remembered: list[CancellationRow] = []
    for is_state, letter, key, armed, at1, at2, level, event_id, event_type in rows:
        if is_state:
            found[(letter, key)] = StateRow(letter, key, armed, at1, at2, level)
        else:
            remembered.append(CancellationRow(letter, key, at1, event_id, event_type))
    return found, remembered


# The four writes of a batch's plans in one statement (one round trip instead of four): the
# remembered cancellations, the frequency states, the cancel of pending letters and the new
# letters. Data-modifying CTEs share one snapshot, so this is what the four statements in this
# order did: the cancel's targets are the letters committed before (as before: never the
# letters this statement inserts, which are of the same events and already decided with the
# cancellations in mind), locked in id order and re-checked after a wait (decision 0020); the
# two upserts touch other tables. The cancel's lookups are one index probe per (letter, client)
# and per (letter, contract) (decision 0085): a join with ``client_id = .. OR contract_id = ..``
# was planned as a scan of every pending letter, whose cost grew with the backlog of scheduled
# letters (7 ms per batch at 5,000 pending). A lateral ``UNION ALL`` of the two lookups is
# planned as parameterised probes of the pending-letter indexes whatever the statistics say,
# and the lock takes each candidate by primary key, in id order. Duplicate keys are removed by
# the caller (an upsert may not touch a row twice).
_WRITE_PLANS_SQL = """
WITH remembered AS (
    INSERT INTO notifier.letter_cancellations (letter, subject, occurred_at, event_id,
        event_type)
    SELECT * FROM unnest(CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS timestamptz[]),
        CAST($4 AS uuid[]), CAST($5 AS text[]))
    ON CONFLICT (letter, subject) DO UPDATE
    SET occurred_at = excluded.occurred_at, event_id = excluded.event_id,
        event_type = excluded.event_type, updated_at = now()
    WHERE notifier.letter_cancellations.occurred_at < excluded.occurred_at
), states AS (
    INSERT INTO notifier.letter_states (letter, client_id, armed, last_fired_at, last_event_at,
        last_level)
    SELECT * FROM unnest(CAST($6 AS text[]), CAST($7 AS text[]), CAST($8 AS boolean[]),
        CAST($9 AS timestamptz[]), CAST($10 AS timestamptz[]), CAST($11 AS numeric[]))
    ON CONFLICT (letter, client_id) DO UPDATE
    SET armed = excluded.armed, last_fired_at = excluded.last_fired_at,
        last_event_at = excluded.last_event_at, last_level = excluded.last_level,
        updated_at = now()
), r AS (
    SELECT * FROM unnest(CAST($12 AS text[]), CAST($13 AS text[]), CAST($14 AS text[]),
        CAST($15 AS timestamptz[]), CAST($16 AS uuid[]), CAST($17 AS text[]))
        AS r(letter, client_id, contract_id, occurred_at, event_id, reason)
), candidates AS (
    SELECT DISTINCT ON (l.id) l.id, r.event_id, r.reason
    FROM r CROSS JOIN LATERAL (
        SELECT id FROM notifier.letters
        WHERE client_id = r.client_id AND letter = r.letter
          AND status IN ('scheduled', 'sending') AND triggered_at <= r.occurred_at
        UNION ALL
        SELECT id FROM notifier.letters
        WHERE contract_id = r.contract_id AND letter = r.letter
          AND status IN ('scheduled', 'sending') AND triggered_at <= r.occurred_at
    ) AS l
    ORDER BY l.id, r.occurred_at DESC
), target AS (
    SELECT l.id FROM (SELECT id FROM candidates ORDER BY id) AS c
    CROSS JOIN LATERAL (
        SELECT id FROM notifier.letters
        WHERE id = c.id AND status IN ('scheduled', 'sending')
        FOR UPDATE
    ) AS l
), cancelled AS (
    UPDATE notifier.letters AS l
    SET status = 'cancelled', cancel_reason = c.reason, cancelled_by_event_id = c.event_id,
        lease_until = NULL, lease_token = NULL, updated_at = $18
    FROM target JOIN candidates AS c ON c.id = target.id
    WHERE l.id = target.id
    RETURNING l.id, c.event_id
), inserted AS (
    INSERT INTO notifier.letters (event_id, letter, client_id, contract_id, channel, recipient,
        locale, context, status, triggered_at, send_at, expires_at, dedup_key, cancel_reason,
        cancelled_by_event_id, origin, created_at, updated_at)
    SELECT event_id, letter, client_id, contract_id, channel, recipient, locale,
        CAST(context AS jsonb), status, triggered_at, send_at, expires_at, dedup_key,
        cancel_reason, cancelled_by_event_id, origin, created_at, updated_at
    FROM unnest(CAST($19 AS uuid[]), CAST($20 AS text[]), CAST($21 AS text[]),
        CAST($22 AS text[]), CAST($23 AS text[]), CAST($24 AS text[]), CAST($25 AS text[]),
        CAST($26 AS text[]), CAST($27 AS text[]), CAST($28 AS timestamptz[]),
        CAST($29 AS timestamptz[]), CAST($30 AS timestamptz[]), CAST($31 AS text[]),
        CAST($32 AS text[]), CAST($33 AS uuid[]), CAST($34 AS text[]),
        CAST($35 AS timestamptz[]), CAST($36 AS timestamptz[]))
        AS r(event_id, letter, client_id, contract_id, channel, recipient, locale, context,
             status, triggered_at, send_at, expires_at, dedup_key, cancel_reason,
             cancelled_by_event_id, origin, created_at, updated_at)
    ON CONFLICT DO NOTHING
    RETURNING id, event_id, status, send_at
)
SELECT false AS created, id, event_id, NULL::text AS status, NULL::timestamptz AS send_at
FROM cancelled
UNION ALL
SELECT true, id, event_id, status, send_at FROM inserted
"""

_REMEMBERED_COLUMNS = ("letter", "subject", "occurred_at", "event_id", "event_type")
_STATE_COLUMNS = ("letter", "client_id", "armed", "last_fired_at", "last_event_at", "last_level")
_CANCEL_COLUMNS = ("letter", "client_id", "contract_id", "occurred_at", "event_id", "reason")
_LETTER_INSERT_COLUMNS = (
    "event_id",
    "letter",
    "client_id",
    "contract_id",
    "channel",
    "recipient",
    "locale",
    "context",
    "status",
    "triggered_at",
    "send_at",
    "expires_at",
    "dedup_key",
    "cancel_reason",
    "cancelled_by_event_id",
    "origin",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class Written:
    """What ``write_plans`` changed: (letter id, cancelling event id) of each letter cancelled;
    (id, event_id, status, send_at) of each letter inserted."""

    cancelled: list[tuple[int, uuid.UUID]]
    inserted: list[tuple[int, uuid.UUID, LetterStatus, datetime]]


async def write_plans(
    session: Db,
    *,
    remembered: Sequence[Mapping[str, Any]],
    cancels: Sequence[Mapping[str, Any]],
    states: Sequence[Mapping[str, Any]],
    letters: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Written:
    """The writes of many events' plans (events of distinct clients) in one statement.

    ``remembered``: (letter, subject) -> the cancelling event, upserted; ``occurred_at`` only
    moves forward (the latest per key wins). ``cancels``: letter, client_id or contract_id (the
    other None), occurred_at, event_id, reason: every scheduled or sending letter matching,
    triggered at/before ``occurred_at``, is cancelled (rows locked in id order like the drain;
    a row a drain holds is waited for and re-checked: if it got sent meanwhile, it no longer
    matches). ``states``: frequency states upserted (the last per (letter, client_id) wins).
    ``letters``: inserted, ON CONFLICT DO NOTHING (unique event/letter/recipient and dedup
    key); ``context`` is JSON text."""
    if not (remembered or cancels or states or letters):
        return Written([], [])
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in remembered:
        key = (row["letter"], row["subject"])
        if key not in latest or latest[key]["occurred_at"] < row["occurred_at"]:
            latest[key] = row
    last_state = {(r["letter"], r["client_id"]): r for r in states}
    cancel_rows = [{**r, "reason": str(r["reason"])[:200]} for r in cancels]
    rows = await (await driver(session)).fetch(
        _WRITE_PLANS_SQL,
        *_arrays(list(latest.values()), _REMEMBERED_COLUMNS),
        *_arrays(list(last_state.values()), _STATE_COLUMNS),
        *_arrays(cancel_rows, _CANCEL_COLUMNS),
        now,
        *_arrays(letters, _LETTER_INSERT_COLUMNS),
    )
    written = Written([], [])
    for created, letter_id, event_id, status, send_at in rows:
        if created:
            written.inserted.append((letter_id, event_id, LetterStatus(status), send_at))
        else:
            written.cancelled.append((letter_id, event_id))
    return written


def _arrays(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    """Rows -> one array per column, in ``names`` order. Enum members go as they are: the
    statuses are ``StrEnum``s, which asyncpg encodes as the text they are."""
    return [list(map(itemgetter(name), rows)) for name in names]


# ---- delivery -----------------------------------------------------------------------------

# The results of a batch as one array per column; what is the same for every row goes once
# (``:now``): asyncpg encodes a timestamptz in ~0.7 us, against ~0.15 us for a NULL (issue 7).
# A letter's ``sent_at`` is the batch's ``now`` when it was sent; ``send_at`` NULL keeps the
# stored one (a retry gives the new one).
_UPDATE_LETTERS = text(
    """
UPDATE notifier.letters AS l
SET status = r.status, send_at = COALESCE(r.send_at, l.send_at),
    sent_at = CASE WHEN r.status = 'sent' THEN CAST(:now AS timestamptz) END,
    provider_message_id = r.provider_message_id, last_error = r.last_error,
    skip_reason = r.skip_reason, attempts = r.attempts, lease_until = NULL, lease_token = NULL,
    updated_at = :now, cancel_reason = COALESCE(r.cancel_reason, l.cancel_reason)
FROM unnest(CAST(:id AS bigint[]), CAST(:status AS text[]), CAST(:send_at AS timestamptz[]),
    CAST(:provider_message_id AS text[]), CAST(:last_error AS text[]),
    CAST(:skip_reason AS text[]), CAST(:attempts AS int[]), CAST(:cancel_reason AS text[]))
    AS r(id, status, send_at, provider_message_id, last_error, skip_reason, attempts,
         cancel_reason)
WHERE l.id = r.id
"""
)

_INSERT_ATTEMPTS = text(
    """
INSERT INTO notifier.attempts (letter_id, try_number, outcome, status_code, code, error,
    provider, provider_message_id, duration_ms, created_at)
SELECT r.*, CAST(:now AS timestamptz)
FROM unnest(CAST(:letter_id AS bigint[]), CAST(:try_number AS int[]),
    CAST(:outcome AS text[]), CAST(:status_code AS int[]), CAST(:code AS text[]),
    CAST(:error AS text[]), CAST(:provider AS text[]), CAST(:provider_message_id AS text[]),
    CAST(:duration_ms AS int[]))
    AS r(letter_id, try_number, outcome, status_code, code, error, provider,
         provider_message_id, duration_ms)
"""
)
#: on asyncpg's connection of the drain's transaction (decision 0107)
_UPDATE_LETTERS_ON_DRIVER = DriverStatement.of(_UPDATE_LETTERS)
_INSERT_ATTEMPTS_ON_DRIVER = DriverStatement.of(_INSERT_ATTEMPTS)


@dataclass(slots=True)
class LetterResults:
    """A batch's delivery results, one list per column (``LetterSender._record``). Statuses and
    outcomes go as the ``StrEnum`` members they are (asyncpg writes their text)."""

    id: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    send_at: list[datetime | None] = field(default_factory=list)  # None: unchanged
    provider_message_id: list[str | None] = field(default_factory=list)
    last_error: list[str | None] = field(default_factory=list)
    skip_reason: list[str | None] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    cancel_reason: list[str | None] = field(default_factory=list)  # None: keep the stored one


@dataclass(slots=True)
class AttemptRows:
    """A batch's attempts, one list per column (``LetterSender._record``)."""

    letter_id: list[int] = field(default_factory=list)
    try_number: list[int] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    status_code: list[int | None] = field(default_factory=list)
    code: list[str | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    provider: list[str | None] = field(default_factory=list)
    provider_message_id: list[str | None] = field(default_factory=list)
    duration_ms: list[int | None] = field(default_factory=list)


async def update_letters(session: AsyncSession, rows: LetterResults, *, now: datetime) -> None:
    """Record delivery results by primary key, one statement (arrays, not a row per bind);
    ``updated_at`` is ``now``, and ``sent_at`` too for a letter now ``sent``. The lease of a
    row an earlier version left ``sending`` is released."""
    if rows.id:
        params = {name: getattr(rows, name) for name in LetterResults.__dataclass_fields__}
        await _UPDATE_LETTERS_ON_DRIVER.execute(session, {**params, "now": now})


async def insert_attempts(session: AsyncSession, rows: AttemptRows, *, now: datetime) -> None:
    """One row per delivery try, created at ``now``, in one statement."""
    if rows.letter_id:
        params = {name: getattr(rows, name) for name in AttemptRows.__dataclass_fields__}
        await _INSERT_ATTEMPTS_ON_DRIVER.execute(session, {**params, "now": now})


_NEXT_OCCURRENCES_SQL = """
INSERT INTO notifier.letters (event_id, letter, client_id, contract_id, channel, recipient,
    locale, context, status, triggered_at, send_at, expires_at, dedup_key, origin, created_at,
    updated_at)
SELECT NULL, l.letter, l.client_id, l.contract_id, l.channel, l.recipient, l.locale,
    jsonb_set(l.context, '{repeat}', jsonb_build_object('of', l.id, 'occurrence',
        COALESCE((l.context #>> '{repeat,occurrence}')::int, 1) + 1)),
    'scheduled', l.triggered_at, n.next_at, l.expires_at - l.send_at + n.next_at,
    l.letter || ':repeat:' || md5(concat_ws('|', l.letter, l.client_id, l.recipient,
        l.context #>> '{event,id}', n.next_at::text)),
    'repeat', :now, :now
FROM unnest(CAST(:ids AS bigint[]), CAST(:next_at AS timestamptz[])) AS n(id, next_at)
JOIN notifier.letters AS l ON l.id = n.id
WHERE NOT EXISTS (
    SELECT 1 FROM notifier.letter_cancellations AS x
    WHERE x.letter = l.letter
      AND x.subject IN ('client:' || l.client_id, 'contract:' || l.contract_id)
      AND x.occurred_at >= CAST(l.context #>> '{event,occurred_at}' AS timestamptz)
)
ON CONFLICT DO NOTHING
RETURNING id
"""


async def schedule_next(
    session: AsyncSession, next_at: Mapping[int, datetime], *, now: datetime
) -> list[int]:
    """The next occurrence of each letter of a series (``{letter id: when}``): a copy due
    then, ``origin`` repeat, ``context.repeat`` = {of, occurrence}, the expiry moved along,
    ``triggered_at`` the series' trigger (so its cancelling events match it, as any letter);
    none once a cancelling event was remembered for its subject, none twice (dedup key)."""
    if not next_at:
        return []
    result = await session.execute(
        text(_NEXT_OCCURRENCES_SQL),
        {"ids": list(next_at), "next_at": list(next_at.values()), "now": now},
    )
    return list(result.scalars())


_PROVIDER_IDS_SQL = """
SELECT k.letter, k.client_id,
    (SELECT s.provider_message_id FROM notifier.letters AS s
     WHERE s.client_id = k.client_id AND s.letter = k.letter AND s.status = 'sent'
       AND s.provider_message_id IS NOT NULL
     ORDER BY s.sent_at DESC NULLS LAST, s.id DESC LIMIT 1) AS provider_message_id,
    EXISTS (SELECT 1 FROM notifier.letters AS p
            WHERE p.client_id = k.client_id AND p.letter = k.letter
              AND p.status IN ('scheduled', 'sending')) AS pending
FROM unnest(CAST(:letters AS text[]), CAST(:clients AS text[])) AS k(letter, client_id)
"""


@dataclass(frozen=True, slots=True)
class ProviderId:
    """The provider id answered to a client's last sent letter of a name (None: none sent),
    and whether one is still pending (scheduled or sending)."""

    value: str | None
    pending: bool


async def provider_ids(
    session: AsyncSession, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], ProviderId]:
    """``{(letter, client_id): ProviderId}`` in one statement (an outbound letter's
    ``external_id_from``: the CRM id an earlier upsert answered)."""
    keys = sorted(set(pairs))
    if not keys:
        return {}
    result = await session.execute(
        text(_PROVIDER_IDS_SQL),
        {"letters": [k[0] for k in keys], "clients": [k[1] for k in keys]},
    )
    return {(row[0], row[1]): ProviderId(row[2], row[3]) for row in result}


# ---- settings -----------------------------------------------------------------------------


async def settings_rows(
    session: AsyncSession, letters: Sequence[str] | None = None
) -> dict[str, LetterSetting]:
    stmt = select(LetterSetting)
    if letters is not None:
        stmt = stmt.where(LetterSetting.letter.in_(letters))
    return {s.letter: s for s in (await session.execute(stmt)).scalars()}


async def setting_for_update(session: AsyncSession, letter: str) -> LetterSetting | None:
    stmt = select(LetterSetting).where(LetterSetting.letter == letter).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def upsert_setting(
    session: AsyncSession,
    *,
    letter: str,
    enabled: bool,
    params: dict[str, Any],
    updated_by: str,
) -> LetterSetting:
    values = {"enabled": enabled, "params": params, "updated_by": updated_by}
    stmt = (
        insert(LetterSetting)
        .values(letter=letter, **values)
        .on_conflict_do_update(
            index_elements=[LetterSetting.letter], set_={**values, "updated_at": func.now()}
        )
        .returning(LetterSetting)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def insert_setting_audit(
    session: AsyncSession,
    *,
    letter: str,
    changed_by: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
) -> None:
    await session.execute(
        insert(LetterSettingAudit).values(letter=letter, changed_by=changed_by, old=old, new=new)
    )


async def setting_audit(session: AsyncSession, letter: str) -> list[LetterSettingAudit]:
    stmt = (
        select(LetterSettingAudit)
        .where(LetterSettingAudit.letter == letter)
        .order_by(LetterSettingAudit.changed_at.desc(), LetterSettingAudit.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


# ---- reads for the operator API -----------------------------------------------------------


async def get_letter(session: AsyncSession, letter_id: int) -> Letter | None:
    return await session.get(Letter, letter_id)


async def attempts_of(session: AsyncSession, letter_id: int) -> list[Attempt]:
    stmt = select(Attempt).where(Attempt.letter_id == letter_id).order_by(Attempt.try_number)
    return list((await session.execute(stmt)).scalars())


async def list_letters(
    session: AsyncSession,
    *,
    client_id: str | None = None,
    letter: str | None = None,
    status: LetterStatus | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[Letter]:
    """Newest first; ``after`` = (created_at, id) of the last row of the previous page."""
    stmt = select(Letter)
    if client_id is not None:
        stmt = stmt.where(Letter.client_id == client_id)
    if letter is not None:
        stmt = stmt.where(Letter.letter == letter)
    if status is not None:
        stmt = stmt.where(Letter.status == status)
    if created_from is not None:
        stmt = stmt.where(Letter.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Letter.created_at < created_to)
    stmt = newest_first(stmt, Letter.created_at, Letter.id, after=after, limit=limit)
    return list((await session.execute(stmt)).scalars())


async def cancel_by_id(
    session: AsyncSession, letter_id: int, *, reason: str, now: datetime
) -> Letter | None:
    """Operator cancel: scheduled or sending (waits for a drain holding it), else None."""
    stmt = (
        update(Letter)
        .where(Letter.id == letter_id, Letter.status.in_(PENDING))
        .values(
            status=LetterStatus.cancelled,
            cancel_reason=reason[:200],
            lease_until=None,
            lease_token=None,
            updated_at=now,
        )
        .returning(Letter)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
