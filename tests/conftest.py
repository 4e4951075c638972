"""Shared fixtures: real PostgreSQL (one migrated database per xdist worker, emptied at the start
of every test) and real Redis (a flushed db per xdist worker). Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
import respx.mocks
from notifier.settings import NotifierSettings
from notifier_common.db import create_engine, create_sessionmaker
from notifier_common.devservices import Services, ensure_services, to_libpq, with_database
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

ROOT = Path(__file__).resolve().parents[1]

# respx patches httpcore's pools; create_http_client's transport sends through Http1Pool
# (decision 0106), so respx patches its handle_async_request the same way
respx.mocks.HTTPCoreMocker.add_targets("notifier_common.h1pool.Http1Pool")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    found = ensure_services(
        database_url=os.environ.get(
            "NOTIFIER_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        redis_url=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        data_dir=ROOT / ".local" / "test",
        create_db=False,
    )
    return found


def _worker_index(request: pytest.FixtureRequest) -> int:
    worker = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    return int(worker.removeprefix("gw") or 0)


async def _admin_execute(services: Services, *statements: str) -> None:
    conn = await asyncpg.connect(services.admin_dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def worker_database(services: Services, request: pytest.FixtureRequest) -> Iterator[str]:
    """One database per xdist worker, built by the migrations (``alembic upgrade head``)."""
    from notifier.migrate import upgrade

    name = f"ntf_test_{_worker_index(request)}_{os.getpid()}"
    asyncio.run(
        _admin_execute(
            services, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
        )
    )
    upgrade(with_database(services.database_url, name))
    yield name
    asyncio.run(_admin_execute(services, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_database(url: str) -> None:
    """Empty every table of our schemas before a test (never after: a crashed test can't leak).

    Other sessions still connected (a previous test's leftovers) are terminated first. DELETE
    with FK triggers off costs ~0.1 s; a cloned database per test cost 2-4 s here under load
    (CREATE ... TEMPLATE and DROP DATABASE both force a checkpoint). See decision 0002.
    """
    conn = await asyncpg.connect(to_libpq(url))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        tables = await conn.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables"
            " WHERE schemaname IN ('notifier', 'gateway')"
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            for row in tables:
                await conn.execute(f"DELETE FROM {row['t']}")
    finally:
        await conn.close()


@pytest.fixture
async def database_url(services: Services, worker_database: str) -> AsyncIterator[str]:
    """The worker's migrated database, emptied for this test."""
    url = with_database(services.database_url, worker_database)
    await _reset_database(url)
    return url


REDIS_OWNER_KEY = "notifier:test:owner"
REDIS_OWNER_TTL = 1800  # a crashed run's claim lapses; every test renews it


@pytest.fixture(scope="session")
def worker_redis(services: Services) -> Iterator[tuple[str, str]]:
    """A Redis db of this xdist worker's own: the first of 1-14 whose owner key it could set.

    Fixed numbers let two test runs on one machine flush each other's queues and rate-limit
    buckets mid-test; db 0 (make run) and 15 (bench, make run's test) are never taken.
    """
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(1, 15):
        url = with_database(services.redis_url, str(db))
        client = redis.Redis.from_url(url)
        try:
            if client.set(REDIS_OWNER_KEY, token, nx=True, ex=REDIS_OWNER_TTL):
                break
        finally:
            client.close()
    else:
        pytest.fail("no free Redis db among 1-14 (owner key notifier:test:owner set on all)")
    yield url, token
    client = redis.Redis.from_url(url)
    if client.get(REDIS_OWNER_KEY) == token.encode():
        client.delete(REDIS_OWNER_KEY)
    client.close()


@pytest.fixture
async def redis_url(worker_redis: tuple[str, str]) -> AsyncIterator[str]:
    """The worker's Redis db, flushed for this test (and its claim renewed, atomically)."""
    url, token = worker_redis
    client = Redis.from_url(url)
    async with client.pipeline(transaction=True) as pipe:
        pipe.flushdb()
        pipe.set(REDIS_OWNER_KEY, token, ex=REDIS_OWNER_TTL)
        await pipe.execute()
    await client.aclose()
    return url


@pytest.fixture
def settings(database_url: str, redis_url: str) -> NotifierSettings:
    return NotifierSettings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        worker_metrics_port=0,
        worker_poll_delay=0.01,
        queue_name=f"notifier:test:{os.getpid()}",
        gateway_url="http://gateway.test",
        gateway_token="test-gateway-token",
        clients_service_url="http://upstream.test",
        billing_service_url="http://upstream.test",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def app(settings: NotifierSettings) -> AsyncIterator[object]:
    from notifier.api.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as c:
        yield c


TokenFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_token(database_url: str) -> TokenFactory:
    from notifier.auth.tokens import create_token

    async def make(*scopes: str, name: str = "test") -> str:
        return await create_token(database_url, name=name, scopes=scopes)

    return make


@pytest.fixture
def libpq_url(database_url: str) -> str:
    return to_libpq(database_url)
