"""The one alembic history builds an empty database, matches the models, and goes down and up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from notifier.migrate import check, downgrade, upgrade
from notifier_common.devservices import Services, to_libpq, with_database

SCHEMAS = ("notifier", "gateway")


async def admin(services: Services, sql: str) -> None:
    conn = await asyncpg.connect(services.admin_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(to_libpq(url))
    try:
        rows = await conn.fetch(
            "SELECT schemaname || '.' || tablename AS t FROM pg_tables"
            " WHERE schemaname = ANY($1::text[])",
            list(SCHEMAS),
        )
        return {r["t"] for r in rows}
    finally:
        await conn.close()


@pytest.fixture
def empty_database(services: Services) -> Iterator[str]:
    name = f"ntf_mig_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(services, f'CREATE DATABASE "{name}"'))
    yield with_database(services.database_url, name)
    asyncio.run(admin(services, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class TestMigrations:
    def test_upgrade_head_on_an_empty_database_matches_the_models(
        self, empty_database: str
    ) -> None:
        upgrade(empty_database)
        assert {"notifier.events", "notifier.api_tokens", "gateway.api_tokens"} <= asyncio.run(
            tables(empty_database)
        )
        check(empty_database)  # alembic check: raises if autogenerate finds a difference

    def test_downgrade_to_base_and_up_again(self, empty_database: str) -> None:
        upgrade(empty_database)
        before = asyncio.run(tables(empty_database))
        downgrade(empty_database, "base")
        assert asyncio.run(tables(empty_database)) == set()
        upgrade(empty_database)
        assert asyncio.run(tables(empty_database)) == before
        check(empty_database)
