"""The latency workload's upkeep after the warm-up (decision 0092), on the real PostgreSQL.

``letters.reset`` TRUNCATEs the written tables: they keep the column statistics of the rows an
earlier workload left, and ANALYZE of an empty table does not replace them. A gateway
connection that prepared a join on ``gateway.messages`` while the table held a few dozen rows keeps
that plan, a sequential scan, however large the table grows. ``vacuum_written_tables``
after the warm-up gives the tables statistics of their own rows and makes the plan be made again.
The product's own statements no longer depend on it (decisions 0111 and 0112: the log provider's
record has no join, the results ``UPDATE`` keeps its index plan); a join of the same shape
stands in for any other.
"""

from __future__ import annotations

import asyncio

import asyncpg

from bench.env import Database
from bench.latency import vacuum_written_tables

#: ``n`` messages whose stored request is ``width`` bytes of incompressible text
_FILL = """
INSERT INTO gateway.messages (id, idempotency_key, request_hash, request, channel, action,
    provider, recipient, status)
SELECT gen_random_uuid(), 'k-' || gen_random_uuid(), 'h',
    (SELECT string_agg(md5(random()::text || i || g), '') FROM generate_series(1, $2 / 32) AS g),
    'email', 'send', 'log', 'a@example.com', 'accepted'
FROM generate_series(1, $1) AS i
"""
#: a join of ids from unnest on the primary key, as the gateway's statements had before 0111/0112
_JOIN = "SELECT m.id FROM unnest($1::uuid[]) AS r(id) JOIN gateway.messages AS m ON m.id = r.id"
_EXECUTE = "EXPLAIN EXECUTE join_ids(ARRAY[gen_random_uuid()])"


def test_the_first_run_is_not_planned_on_the_truncated_tables(libpq_url: str) -> None:
    db = Database(libpq_url)
    # an earlier workload: wide messages, analyzed, then truncated by letters.reset
    db.sql(_FILL, 2_000, 1_920)
    db.sql("ANALYZE gateway.messages")
    db.sql("TRUNCATE gateway.messages, gateway.logged_messages")
    db.sql(_FILL, 40, 1_920)  # the warm-up's first second

    with asyncio.Runner() as runner:  # one connection held throughout, as the gateway's are
        gateway = runner.run(asyncpg.connect(libpq_url))

        def plan() -> str:
            rows = runner.run(gateway.fetch(_EXECUTE))
            return "\n".join(row[0] for row in rows)

        try:
            runner.run(gateway.execute("SET plan_cache_mode = force_generic_plan"))
            runner.run(gateway.execute(f"PREPARE join_ids AS {_JOIN}"))
            assert "Seq Scan on messages" in plan()
            db.sql(_FILL, 5_000, 192)  # the rest of the warm-up: the cached plan stays
            assert "Seq Scan on messages" in plan()

            vacuum_written_tables(db)

            assert "using pk_messages on messages" in plan()
        finally:
            runner.run(gateway.close())
    stats = db.sql("SELECT reltuples FROM pg_class WHERE oid = 'gateway.messages'::regclass")
    assert stats[0]["reltuples"] == 5_040
