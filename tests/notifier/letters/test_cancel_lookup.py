"""The group commit's cancel of pending letters looks them up by client and by contract: its
work does not grow with the backlog of other clients' scheduled letters (decision 0085); its
reads of frequency states and remembered cancellations probe them by key (decision 0087).

Measured as the shared buffers the write statement touches (``EXPLAIN (ANALYZE, BUFFERS)``: a
count, not a time), once with 10 and once with 3,000 pending letters of other clients, with the
table's statistics as stale as they are right after a burst of inserts (never analyzed)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.letters import repository
from notifier.models import LetterStatus
from notifier_common.db import held_connection, session_scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LETTER = "PrepaidFirstTakeARideNotice"


def pending(client_id: str, contract_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": None,
        "letter": LETTER,
        "client_id": client_id,
        "contract_id": contract_id,
        "channel": "email",
        "recipient": f"{client_id}@example.com",
        "locale": "ru",
        "context": {},
        "status": LetterStatus.scheduled,
        "triggered_at": NOW - timedelta(hours=1),
        "send_at": NOW + timedelta(days=1),
        "expires_at": None,
        "origin": "manual",
        **extra,
    }


async def seed(sessionmaker: async_sessionmaker[AsyncSession], others: range) -> None:
    rows = [pending(f"other-{n}", f"other-contract-{n}") for n in others]
    async with session_scope(sessionmaker) as s:
        for start in range(0, len(rows), 1000):
            await repository.insert_letters(s, rows[start : start + 1000])


class Explained:
    """Stands in for the asyncpg connection ``write_plans`` runs on: runs its statement under
    ``EXPLAIN (ANALYZE, BUFFERS)`` (it executes) and keeps the plan."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.plan: dict[str, Any] = {}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        out = await self.connection.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args
        )
        # text, or already decoded where the pool's connections carry a json codec
        self.plan = (json.loads(out) if isinstance(out, str) else out)[0]["Plan"]
        return []


def blocks(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


async def cancel_buffers(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Buffers the write statement touched to cancel client-1's and contract-2's letters, and
    how many it cancelled (counted in the same, rolled-back transaction)."""
    cancels = [
        {
            "letter": LETTER,
            "client_id": "client-1",
            "contract_id": None,
            "occurred_at": NOW,
            "event_id": uuid.uuid4(),
            "reason": "paid",
        },
        {
            "letter": LETTER,
            "client_id": None,
            "contract_id": "contract-2",
            "occurred_at": NOW,
            "event_id": uuid.uuid4(),
            "reason": "closed",
        },
    ]
    async with held_connection(sessionmaker) as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            explained = Explained(connection)
            await repository.write_plans(
                explained, remembered=[], cancels=cancels, states=[], letters=[], now=NOW
            )
            cancelled = await connection.fetchval(
                "SELECT count(*) FROM notifier.letters WHERE status = 'cancelled'"
            )
        finally:
            await transaction.rollback()
    return blocks(explained.plan), cancelled


async def test_cancel_work_does_not_grow_with_other_clients_pending_letters(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as s:
        await repository.insert_letters(s, [pending("client-1"), pending("client-2", "contract-2")])
    await seed(sessionmaker, range(10))
    small, cancelled_small = await cancel_buffers(sessionmaker)
    await seed(sessionmaker, range(10, 3_010))  # 3,010 pending letters of other clients now
    big, cancelled_big = await cancel_buffers(sessionmaker)

    # client-1's letter by client, client-2's by contract (each run rolled back)
    assert cancelled_small == cancelled_big == 2
    # index probes: deeper indexes cost a few buffers more; a scan of 3,000 pending letters
    # read ~150 more (183 against 31 before decision 0085)
    assert big <= small + 25, (small, big)


async def reads_buffers(connection: Any, subjects: list[str]) -> tuple[int, int]:
    """Buffers the decision reads touched for these subjects under the plan a long-lived
    worker connection ends up with (a prepared statement's generic plan), and the rows found."""
    explained = Explained(connection)
    pairs = [(LETTER, subject) for subject in subjects]
    await repository.decision_reads(explained, states=pairs, cancellations=pairs)
    found = await repository.decision_reads(connection, states=pairs, cancellations=pairs)
    return blocks(explained.plan), len(found[0]) + len(found[1])


async def remember(connection: Any, subjects: range) -> None:
    await connection.execute(
        "INSERT INTO notifier.letter_cancellations (letter, subject, occurred_at, event_id,"
        " event_type) SELECT $1, 'other-' || n, $2, gen_random_uuid(), 'client.paid'"
        " FROM unnest($3::int[]) AS n",
        LETTER,
        NOW,
        list(subjects),
    )
    await connection.execute(
        "INSERT INTO notifier.letter_states (letter, client_id, armed)"
        " SELECT $1, 'other-' || n, true FROM unnest($2::int[]) AS n",
        LETTER,
        list(subjects),
    )


async def test_decision_reads_probe_by_key_whatever_the_table_size(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0087: the frequency states and remembered cancellations of a batch's clients
    are read by primary-key probes, also in the generic plan a prepared statement settles on
    (forced here): that plan for ``letter = ANY(..) AND key = ANY(..)`` was a sequential scan
    of any table under ~30,000 rows."""
    async with held_connection(sessionmaker) as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await remember(connection, range(2))
            small, found_small = await reads_buffers(connection, ["other-0", "other-1"])
            await remember(connection, range(2, 3_002))
            big, found_big = await reads_buffers(connection, ["other-0", "other-1"])
        finally:
            await transaction.rollback()

    assert found_small == found_big == 4  # two states and two cancellations
    # probes of deeper indexes cost a few buffers more; the scans read ~80 more
    assert big <= small + 10, (small, big)
