"""Async SQLAlchemy plumbing shared by the services: engine, session factory, one transaction,
and the asyncpg connection under a session for hot statements (``driver``, decision 0070)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import asyncpg
from sqlalchemy import MetaData, TextClause, event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
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


#: what asyncpg raises itself (a statement run on the ``driver``) when the connection dropped:
#: the server closed it (``ConnectionDoesNotExistError`` and the other connection errors), it
#: was already closed (``InterfaceError``), or the socket failed
DRIVER_DISCONNECTS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


async def retry_on_disconnect(unit: Callable[[], Awaitable[T]], *, attempts: int = 2) -> T:
    """Run ``unit`` (one whole unit of work, safe to repeat: its writes are idempotent) again
    when it failed because its connection dropped: SQLAlchemy has invalidated that connection
    by then, or (a statement run on the ``driver``) asyncpg knows it is closed and the next
    checkout replaces it (``_discard_closed``); either way the next try gets another. Any
    other error is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return await unit()
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == attempts:
                raise
        except DRIVER_DISCONNECTS:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


#: what the hot statements' repository functions take: a session, or the asyncpg connection
#: of a transaction the caller manages itself (``held_connection``)
Db: TypeAlias = AsyncSession | asyncpg.Connection

_DRIVER_KEY = "notifier_common.driver"


async def driver(db: Db) -> Any:
    """The ``asyncpg.Connection`` of ``db``'s transaction, BEGIN sent (looked up once per
    session transaction); an asyncpg connection is returned as it is.

    Through ``AsyncSession.execute`` a statement costs a cache key, a compiled cache lookup, an
    execution context, bind processors run per array element, a greenlet switch and a result
    wrapper; asyncpg's own ``fetch`` with its prepared-statement cache does the same work for a
    fraction of the CPU (decision 0070). Statements run here are in the session's transaction
    (SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: it is sent
    here), so ``session_scope`` commits or rolls them back with everything else; on an
    autocommit session (``autocommit_sessionmaker``) each commits on its own. asyncpg's errors
    are raised as they are, not wrapped in ``DBAPIError``."""
    if not isinstance(db, AsyncSession):
        return db
    session = db
    transaction = session.sync_session.get_transaction()
    found = session.info.get(_DRIVER_KEY)
    if found is not None and transaction is not None and found[0] is transaction:
        return found[1]
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection
    connection: Any = fairy.driver_connection
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        # the adapter begins with its first statement: begun here as it would (its
        # ``_start_transaction``), with asyncpg's error raised as it is when BEGIN fails, as
        # for the statements run here (the adapter's would be neither asyncpg's nor a
        # ``DBAPIError``)
        transaction = connection.transaction(
            isolation=adapted.isolation_level,
            readonly=adapted.readonly,
            deferrable=adapted.deferrable,
        )
        await transaction.start()
        adapted._transaction = transaction
    session.info[_DRIVER_KEY] = (session.sync_session.get_transaction(), connection)
    return connection


@asynccontextmanager
async def held_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    """An asyncpg connection checked out of the sessionmaker's engine pool for as long as the
    block runs, for transactions run with asyncpg's own ``transaction()`` (no ORM session:
    ~0.4 ms of CPU less per transaction). If it was closed under us (a dropped connection) or
    left inside a transaction, it is invalidated rather than returned to the pool."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        driver_connection: Any = fairy.driver_connection
        try:
            yield driver_connection
        finally:
            if driver_connection.is_closed() or driver_connection.is_in_transaction():
                await conn.invalidate()


_ASYNCPG_DIALECT = PGDialect_asyncpg()


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A ``text()`` statement with typed named binds, compiled once to the SQL SQLAlchemy would
    send for it through asyncpg (``$n`` placeholders, the binds' casts), to be run on the
    ``driver`` with its parameters given by name, as to ``session.execute``. The values go to
    asyncpg as they are: the binds' types must need no SQLAlchemy bind processing (strings,
    numbers, UUIDs, datetimes, bytes and arrays of them)."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: TextClause) -> DriverStatement:
        compiled = statement.compile(dialect=_ASYNCPG_DIALECT)
        return cls(str(compiled), tuple(compiled.positiontup or ()))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]

    async def fetch(self, db: Db, params: Mapping[str, Any]) -> list[Any]:
        rows: list[Any] = await (await driver(db)).fetch(self.sql, *self.args(params))
        return rows  # asyncpg answers a list already

    async def execute(self, db: Db, params: Mapping[str, Any]) -> None:
        await (await driver(db)).execute(self.sql, *self.args(params))


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
