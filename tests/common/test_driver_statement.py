"""Statements run on the asyncpg connection under a session (decisions 0070, 0107):
``driver`` gives it with the session's transaction begun, ``DriverStatement`` runs a typed
``text()`` statement there with its parameters given by name."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from notifier_common.db import (
    DriverStatement,
    autocommit_sessionmaker,
    create_engine,
    create_sessionmaker,
    session_scope,
)
from sqlalchemy import DateTime, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

ECHO = DriverStatement.of(
    text(
        "SELECT r.id, r.name, CAST(:at AS timestamptz) AS at"
        " FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[])) AS r(id, name)"
    ).bindparams(
        bindparam("ids", type_=ARRAY(PGUUID(as_uuid=True))),
        bindparam("names", type_=ARRAY(String())),
        bindparam("at", type_=DateTime(timezone=True)),
    )
)
INSERT = DriverStatement.of(text("INSERT INTO driver_probe (v) VALUES (:v)"))
COUNT = "SELECT count(*) FROM driver_probe"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=1)
    async with eng.begin() as conn:
        await conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS driver_probe (v text)"))
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


async def insert_then_fail(factory: async_sessionmaker[AsyncSession], value: str) -> None:
    async with session_scope(factory) as session:
        await INSERT.execute(session, {"v": value})
        raise RuntimeError("the unit of work fails after the statement")


def test_the_sql_is_what_sqlalchemy_sends_with_the_binds_in_their_order() -> None:
    assert ECHO.names == ("at", "ids", "names")  # as they appear in the SQL
    assert "CAST($2::UUID[] AS uuid[])" in ECHO.sql
    assert ":ids" not in ECHO.sql
    assert ECHO.args({"names": 3, "ids": 2, "at": 1, "unused": 0}) == [1, 2, 3]


async def test_parameters_are_given_by_name(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    async with session_scope(sessionmaker) as session:
        rows = await ECHO.fetch(session, {"names": ["a", None], "ids": ids, "at": at})
    assert [tuple(r) for r in rows] == [(ids[0], "a", at), (ids[1], None, at)]


async def test_statements_are_in_the_sessions_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(RuntimeError):
        await insert_then_fail(sessionmaker, "rolled back")
    async with session_scope(sessionmaker) as session:
        await INSERT.execute(session, {"v": "kept"})
        await session.execute(text("INSERT INTO driver_probe (v) VALUES ('orm')"))
    async with session_scope(sessionmaker) as session:
        assert (await session.execute(text("SELECT v FROM driver_probe ORDER BY v"))).all() == [
            ("kept",),
            ("orm",),
        ]


async def test_on_an_autocommit_session_each_statement_commits(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    single = autocommit_sessionmaker(sessionmaker)
    with pytest.raises(RuntimeError):
        await insert_then_fail(single, "committed")
    async with session_scope(sessionmaker) as session:
        connection = await session.connection()
        assert (await connection.exec_driver_sql(COUNT)).scalar() == 1
