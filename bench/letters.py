"""Due letters for the drain workloads, made by the product itself and multiplied with COPY.

Templates: rows the real worker created from corp events (processing leaves some; otherwise a
small batch of events is processed here). A pilot drain keeps only the templates whose copy the
real drain sent (the stub's data is deterministic, so a recheck that skips a letter always
skips it). ``copy_due`` then COPYs N clones (fresh event ids, ``scheduled``, due in the past)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench import corpus, queue
from bench.env import QUEUE, BenchEnv, as_int
from bench.procs import script

COLUMNS = (
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
    "attempts",
    "origin",
    "created_by",
)
#: events whose letters cover most of the catalog (immediate, delayed and sequence letters)
SEED_MIX = {
    "contract.created": 0.3,
    "client.activated": 0.3,
    "client.balance_changed": 0.25,
    "client.unblocked": 0.1,
    "client.created_by_offer": 0.05,
}


#: other sessions of the bench database in a statement or a transaction now
_BUSY_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction')
"""
#: gateway messages claimed and not answered yet (a call still being worked on)
_IN_FLIGHT_SQL = "SELECT count(*) FROM gateway.messages WHERE status = 'in_progress'"


def wait_until_idle(env: BenchEnv, *, timeout: float = 30.0) -> float:
    """Wait (at most ``timeout`` s) until no other session of the bench database runs a
    statement; the seconds waited. A round stops its drain workers by cancelling them, which
    closes their gateway calls but not the gateway's work on them: a ``TRUNCATE`` racing that
    work deadlocked with the log provider's copy (a provider crash for the whole batch, which
    opened its circuit breaker and spoilt the next round: 99 letters/s)."""
    start = time.monotonic()
    gateway = env.table_exists("gateway.messages")
    while time.monotonic() - start < timeout:
        busy = int(env.sql(_BUSY_SQL)[0][0])
        if not busy and gateway:
            busy = int(env.sql(_IN_FLIGHT_SQL)[0][0])
        if not busy:
            break
        time.sleep(0.1)
    return time.monotonic() - start


def reset(env: BenchEnv) -> None:
    tables = ["notifier.letters", "notifier.attempts"]
    tables += [t for t in ("gateway.messages", "gateway.logged_messages") if env.table_exists(t)]
    wait_until_idle(env)
    env.sql(f"TRUNCATE {', '.join(tables)} CASCADE")


def ensure_seed_letters(env: BenchEnv, *, minimum: int = 40, events: int = 400) -> int:
    """Make sure notifier.letters holds some rows the product created; returns how many."""
    have = int(env.sql("SELECT count(*) FROM notifier.letters")[0][0])
    if have >= minimum:
        return have
    client = env.redis()
    try:
        queue.fill(client, corpus.bodies(events, seed=99, clients=events, kinds=SEED_MIX))
        worker = env.sup.start("worker", [script("notifier"), "worker"], env=env.notifier_env())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and as_int(client.zcount(QUEUE, "-inf", "+inf")) > 1:
            if int(env.sql("SELECT count(*) FROM notifier.letters")[0][0]) >= minimum * 3:
                break
            time.sleep(0.5)
        env.sup.stop(worker)
        client.delete(QUEUE)
    finally:
        client.close()
    return int(env.sql("SELECT count(*) FROM notifier.letters")[0][0])


async def _templates(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, letter, client_id, contract_id, channel, recipient, locale,"
            " context::text AS context, triggered_at, origin FROM notifier.letters"
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


def templates(env: BenchEnv) -> list[dict[str, Any]]:
    return asyncio.run(_templates(env.dsn))


def _record(tpl: dict[str, Any], *, now: datetime, due: datetime, tag: str) -> tuple[Any, ...]:
    return (
        uuid.uuid4(),
        tpl["letter"],
        tpl["client_id"],
        tpl["contract_id"],
        tpl["channel"],
        tpl["recipient"],
        tpl["locale"],
        tpl["context"],
        "scheduled",
        tpl["triggered_at"],
        due,
        now + timedelta(days=2),
        0,
        tpl["origin"],
        tag,
    )


async def _copy(dsn: str, records: list[tuple[Any, ...]], table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda text: b"\x01" + text.encode(),  # jsonb binary = version 1 + text
            decoder=lambda raw: raw[1:].decode(),
            schema="pg_catalog",
            format="binary",
        )
        schema, name = table.split(".")
        await conn.copy_records_to_table(name, records=records, columns=COLUMNS, schema_name=schema)
    finally:
        await conn.close()


def copy_due(
    env: BenchEnv,
    tpls: list[dict[str, Any]],
    count: int,
    *,
    due: bool = True,
    tag: str = "bench",
    table: str = "notifier.letters",
) -> float:
    """COPY ``count`` clones of ``tpls``; due in the last hour (or in a month when not due).
    Returns the seconds the COPY took."""
    rng = random.Random(count)
    now = datetime.now(UTC)
    records = []
    for i in range(count):
        tpl = tpls[i % len(tpls)]
        at = now - timedelta(seconds=rng.randint(1, 3600))
        if not due:
            at = now + timedelta(days=30, seconds=rng.randint(0, 86400))
        records.append(_record(tpl, now=now, due=at, tag=f"{tag}:{tpl['id']}"))
    t0 = time.monotonic()
    for start in range(0, len(records), 100_000):
        asyncio.run(_copy(env.dsn, records[start : start + 100_000], table))
    return time.monotonic() - t0


def status_counts(env: BenchEnv) -> dict[str, int]:
    rows = env.sql("SELECT status::text AS s, count(*) AS n FROM notifier.letters GROUP BY 1")
    return {str(r["s"]): int(r["n"]) for r in rows}


def context_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
