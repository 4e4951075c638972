"""The partial indexes of ``gateway.messages`` (decision 0110) still serve every query that
read the full ones: webhook lookups by provider id, the replay of ``skipped: disabled``
messages and the operators' list filtered by provider and status. Each query is the one the
repository runs, captured as sent and explained on the same connection with its parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gateway.messages import repository
from gateway.models import MessageStatus
from gateway.webhooks.repository import messages_by_provider_id
from notifier_common.db import held_connection, session_scope
from sqlalchemy import event
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# 6,000 messages of one provider: in flight, accepted and delivered (the bulk), a few of each
# outcome an operator looks for
_SEED = """
INSERT INTO gateway.messages (id, idempotency_key, request_hash, request, channel, action,
    provider, recipient, status, code, provider_message_id, attempts, created_at)
SELECT gen_random_uuid(), 'key-' || g, md5(g::text), '{}', 'email', 'send', 'log',
    'user' || g || '@example.com', s.status, s.code,
    CASE WHEN s.status <> 'in_progress' THEN 'log-' || g END, 1,
    now() - make_interval(secs => 6000 - g)
FROM generate_series(1, 6000) AS g,
    LATERAL (SELECT CASE
        WHEN g % 97 = 0 THEN 'skipped' WHEN g % 89 = 0 THEN 'permanent_error'
        WHEN g % 50 = 0 THEN 'in_progress' WHEN g % 3 = 0 THEN 'delivered'
        ELSE 'accepted' END AS status,
        CASE WHEN g % 97 = 0 THEN 'disabled' END AS code) AS s
"""

Query = Callable[[AsyncSession], Awaitable[Any]]


@pytest.fixture
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessionmaker) as s:
        # emptied with TRUNCATE, not the suite's DELETE: fresh index files, sized by this seed
        await s.execute(sql("TRUNCATE gateway.messages CASCADE"))
        await s.execute(sql(_SEED))
        await s.execute(sql("ANALYZE gateway.messages"))


async def _plan(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], query: Query
) -> str:
    """The plan PostgreSQL makes for the statement ``query`` runs, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with sessionmaker() as s:
            await query(s)
            await s.rollback()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    (statement, parameters), *_ = sent
    async with held_connection(sessionmaker) as connection:
        rows = await connection.fetch(f"EXPLAIN {statement}", *(parameters or ()))
    return "\n".join(r[0] for r in rows)


@pytest.mark.usefixtures("seeded")
async def test_webhook_lookups_use_the_provider_id_index(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async def lookup(s: AsyncSession) -> None:
        found = await messages_by_provider_id(s, "log", {"log-5", "log-7", "log-unknown"})
        assert set(found) == {"log-5", "log-7"}

    assert "ix_messages_provider_message_id" in await _plan(engine, sessionmaker, lookup)


@pytest.mark.usefixtures("seeded")
async def test_a_generic_plan_of_the_lookup_uses_the_partial_index(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A prepared statement's generic plan knows no parameter values: ``= ANY($2)`` alone
    must prove ``provider_message_id IS NOT NULL`` (it is strict), or every webhook batch on a
    cached statement would scan the table."""
    async with sessionmaker() as s:
        await s.execute(sql("SET LOCAL plan_cache_mode = force_generic_plan"))
        await s.execute(
            sql(
                "PREPARE lookup(text, text[]) AS SELECT id FROM gateway.messages"
                " WHERE provider = $1 AND provider_message_id = ANY($2)"
            )
        )
        plan = "\n".join(
            (await s.execute(sql("EXPLAIN EXECUTE lookup('log', '{log-5}')"))).scalars()
        )
    assert "ix_messages_provider_message_id" in plan


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            lambda s: repository.claim_replayable(s, "log", limit=500, lease=60),
            id="replay-claim",
        ),
        pytest.param(lambda s: repository.count_replayable(s, "log"), id="replay-count"),
        pytest.param(
            lambda s: repository.list_messages(
                s,
                idempotency_key=None,
                provider="log",
                status=MessageStatus.permanent_error,
                after=None,
                limit=50,
            ),
            id="list-failed",
        ),
    ],
)
async def test_rare_outcomes_are_found_through_the_outcome_index(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], query: Query
) -> None:
    assert "ix_messages_provider_outcome" in await _plan(engine, sessionmaker, query)


@pytest.mark.usefixtures("seeded")
async def test_in_flight_accepted_and_delivered_messages_take_no_outcome_entry(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """What the predicate is for: of 6,000 messages, the 126 with a rare outcome are in the
    outcome index (one leaf page beside the metapage); the full ``(provider, status)`` index it
    replaced held all 6,000 (~25 pages). Claims and results of the bulk write nothing there."""
    async with sessionmaker() as s:
        pages = (
            await s.execute(
                sql(
                    "SELECT pg_relation_size('gateway.ix_messages_provider_outcome')"
                    " / current_setting('block_size')::int"
                )
            )
        ).scalar_one()
    assert pages <= 2
