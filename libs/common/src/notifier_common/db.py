"""Async SQLAlchemy plumbing shared by the services: engine, session factory, one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import MetaData, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


T = TypeVar("T")


def metadata_for(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    app_name: str = "notifier",
    pre_ping: bool = False,
    idle_in_transaction_seconds: float | None = None,
) -> AsyncEngine:
    """The services' engine. A pooled connection the server closed (a restart, a terminated
    backend, an idle timeout) is replaced at checkout at no cost: asyncpg already knows it is
    closed (decision 0089). ``pre_ping=True`` adds SQLAlchemy's ping, three round trips per
    checkout (``BEGIN``, ``;``, ``ROLLBACK``), for a connection that died without telling.
    ``idle_in_transaction_seconds``: the server ends a session that sits this long inside a
    transaction without a statement (its locks are released; the client's next statement
    fails with a closed connection)."""
    server_settings = {"application_name": app_name}
    if idle_in_transaction_seconds is not None:
        ms = int(idle_in_transaction_seconds * 1000)
        server_settings["idle_in_transaction_session_timeout"] = str(ms)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args={"server_settings": server_settings},
    )
    event.listen(engine.sync_engine, "checkout", _discard_closed)
    return engine


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: a connection whose socket the server closed while it sat in the pool is
    invalidated, and the pool hands out a fresh one instead (SQLAlchemy's
    ``DisconnectionError`` protocol, up to three tries)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("the server closed this pooled connection")


async def retry_on_disconnect(unit: Callable[[], Awaitable[T]], *, attempts: int = 2) -> T:
    """Run ``unit`` (one whole unit of work, safe to repeat: its writes are idempotent) again
    when it failed because its connection dropped; SQLAlchemy has invalidated that connection
    by then, so the next try checks out another. Any other error is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return await unit()
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def autocommit_sessionmaker(
    factory: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``factory``'s engine (same pool) whose statements each commit on their own:
    for a unit of work that is one statement, no ``BEGIN`` and ``COMMIT`` round trips around it
    (decision 0088). ``session_scope`` works with them as with any other."""
    engine = factory.kw["bind"]
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
    )


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The one place a unit of work commits (or rolls back on any error)."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
