"""The results ``UPDATE`` of ``gateway.messages`` keeps an index plan whatever the table's size
when a connection planned it (decision 0112).

A pooled connection prepares the statement once and, after five executions, may keep its
generic plan, made without the batch's size and on the statistics of that moment. Planned on a
new install's or the benchmark warm-up's few dozen rows, the join became a hash join over a
sequential scan and stayed one while the table grew: every result then read the whole table.
Only on a table of a few pages is a sequential scan the cheaper plan (a new install's first
dozens of messages, until autovacuum's first ANALYZE makes the plans again).
"""

from __future__ import annotations

from typing import Any

from gateway.messages.repository import _STORE_ON_DRIVER
from notifier_common.db import held_connection, session_scope
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_FILL = """
INSERT INTO gateway.messages (id, idempotency_key, request_hash, request, channel, action,
    provider, recipient, status)
SELECT gen_random_uuid(), 'k-' || gen_random_uuid(), 'h', '{"to": []}', 'email', 'send', 'log',
    'a@example.com', 'accepted'
FROM generate_series(1, :n)
"""
#: one result, as the gateway stores it, per parameter of the prepared statement
_ONE_RESULT = {
    "ids": "ARRAY[gen_random_uuid()]",
    "tokens": "ARRAY[gen_random_uuid()]",
    "statuses": "ARRAY['accepted']",
    "pmids": "ARRAY['log-1']",
    "codes": "ARRAY[NULL]",
    "reasons": "ARRAY[NULL]",
    "status_codes": "ARRAY[NULL]::int[]",
    "retry_afters": "ARRAY[NULL]::float8[]",
    "excerpts": "ARRAY[NULL]",
    "sent_ats": "ARRAY[now()]",
}


async def _fill(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> None:
    async with session_scope(sessionmaker) as s:
        await s.execute(sql(_FILL), {"n": n})


async def test_the_results_update_uses_the_primary_key_at_any_table_size(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as s:
        await s.execute(sql("TRUNCATE gateway.messages CASCADE"))
    await _fill(sessionmaker, 640)  # the latency benchmark's warm-up: ~16 pages
    async with session_scope(sessionmaker) as s:
        await s.execute(sql("ANALYZE gateway.messages"))

    args = ", ".join(_ONE_RESULT[name] for name in _STORE_ON_DRIVER.names)

    async def plan(connection: Any) -> str:
        rows = await connection.fetch(f"EXPLAIN EXECUTE store_results({args})")
        return "\n".join(r[0] for r in rows)

    async with held_connection(sessionmaker) as connection:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE store_results AS {_STORE_ON_DRIVER.sql}")
        try:
            on_few_rows = await plan(connection)
            await _fill(sessionmaker, 5_000)  # the cached plan stays while the table grows
            grown = await plan(connection)
        finally:
            await connection.execute("DEALLOCATE store_results")
            await connection.execute("RESET plan_cache_mode")
    for made in (on_few_rows, grown):
        assert "Index Scan using pk_messages on messages" in made, made
        assert "Seq Scan on messages" not in made, made
