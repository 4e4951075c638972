"""Pooled connections the server closed are replaced at checkout without a ping (decision 0089),
and ``retry_on_disconnect`` repeats an idempotent unit of work whose connection dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from notifier_common.db import (
    autocommit_sessionmaker,
    create_engine,
    create_sessionmaker,
    driver,
    retry_on_disconnect,
    session_scope,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

PID = text("SELECT pg_backend_pid()")
SUICIDE = text("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One pooled connection, so the next checkout is the connection the test worked on."""
    eng = create_engine(database_url, pool_size=1)
    yield eng
    await eng.dispose()


def asyncpg_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def terminate(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(asyncpg_url(database_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def pooled_driver(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        return raw.driver_connection


async def wait_closed(driver: Any) -> None:
    for _ in range(500):
        if driver.is_closed():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the terminated connection never looked closed")


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    engine: AsyncEngine, database_url: str
) -> None:
    async with engine.connect() as conn:
        first = await conn.scalar(PID)
    driver = await pooled_driver(engine)
    await terminate(database_url, first)
    await wait_closed(driver)  # the server's goodbye reached the idle pooled socket

    async with engine.connect() as conn:  # without the check: "connection is closed"
        second = await conn.scalar(PID)
    assert second != first


async def logged_checkouts(engine: AsyncEngine, times: int) -> list[str]:
    """What asyncpg logs of ``times`` checkouts that each run one prepared SELECT."""
    driver = await pooled_driver(engine)
    seen: list[str] = []
    driver.add_query_logger(lambda record: seen.append(record.query))
    for _ in range(times):
        async with engine.connect() as conn:
            await conn.scalar(PID)
    return seen


async def test_checkout_sends_nothing_to_the_server(engine: AsyncEngine) -> None:
    # the transaction of each use only (its prepared SELECT is not logged by asyncpg);
    # SQLAlchemy's pre-ping would add BEGIN, ";" and ROLLBACK per checkout
    assert await logged_checkouts(engine, 3) == ["BEGIN;", "ROLLBACK;"] * 3


async def test_pre_ping_stays_available(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, pre_ping=True)
    try:
        seen = await logged_checkouts(engine, 1)
    finally:
        await engine.dispose()
    assert seen == ["BEGIN;", ";", "ROLLBACK;", "BEGIN;", "ROLLBACK;"]


async def test_retry_on_disconnect_repeats_a_unit_whose_connection_dropped(
    engine: AsyncEngine,
) -> None:
    tries: list[int] = []

    async def unit() -> int:
        async with engine.connect() as conn:
            pid = await conn.scalar(PID)
            tries.append(pid)
            if len(tries) == 1:  # the server goes away under the first try's statement
                await conn.execute(SUICIDE)
            return int(pid)

    pid = await retry_on_disconnect(unit)
    assert len(tries) == 2
    assert pid == tries[1] != tries[0]


async def test_retry_on_disconnect_repeats_a_unit_whose_driver_statement_lost_its_connection(
    engine: AsyncEngine,
) -> None:
    """A statement run on the driver (decision 0107) raises asyncpg's own error, which SQLAlchemy
    never saw: the closed connection is replaced at the next checkout, and the unit repeated."""
    sessionmaker = autocommit_sessionmaker(create_sessionmaker(engine))
    tries: list[int] = []

    async def unit() -> int:
        async with session_scope(sessionmaker) as session:
            connection = await driver(session)
            pid = int(await connection.fetchval("SELECT pg_backend_pid()"))
            tries.append(pid)
            if len(tries) == 1:
                await connection.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return pid

    pid = await retry_on_disconnect(unit)
    assert len(tries) == 2
    assert pid == tries[1] != tries[0]


async def test_retry_on_disconnect_raises_other_errors_at_once(engine: AsyncEngine) -> None:
    calls = 0

    async def unit() -> None:
        nonlocal calls
        calls += 1
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1 / 0"))

    with pytest.raises(DBAPIError, match="division by zero"):
        await retry_on_disconnect(unit)
    assert calls == 1


async def test_retry_on_disconnect_gives_up_after_its_attempts(engine: AsyncEngine) -> None:
    calls = 0

    async def unit() -> None:
        nonlocal calls
        calls += 1
        async with engine.connect() as conn:
            await conn.execute(SUICIDE)

    with pytest.raises(DBAPIError) as raised:
        await retry_on_disconnect(unit, attempts=3)
    assert raised.value.connection_invalidated
    assert calls == 3


async def test_a_transaction_left_idle_past_its_bound_is_ended_and_its_locks_freed(
    database_url: str,
) -> None:
    """``idle_in_transaction_seconds`` (the notifier worker's ``NOTIFIER_LETTERS_LEASE_SECONDS``,
    decision 0103): a hung holder of row locks loses them; the next statement fails."""
    hung = create_engine(database_url, pool_size=1, idle_in_transaction_seconds=0.2)
    other = create_engine(database_url, pool_size=1)
    try:
        async with hung.connect() as conn:
            assert await conn.scalar(text("SHOW idle_in_transaction_session_timeout")) == "200ms"
            blocker = await conn.scalar(PID)  # inside the connection's transaction
            await asyncio.sleep(1.0)  # idle inside the transaction, past the bound
            with pytest.raises(DBAPIError):
                await conn.scalar(text("SELECT 1"))
        async with other.connect() as conn:
            alive = await conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": blocker}
            )
        assert alive == 0  # the server ended the session, so its locks are gone
    finally:
        await hung.dispose()
        await other.dispose()


async def test_without_the_bound_the_server_default_holds(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.scalar(text("SHOW idle_in_transaction_session_timeout")) == "0"
