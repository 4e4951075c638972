"""The asyncpg connection under a session's transaction, for the group commit's hot statements
(docs/decisions/0070-group-commit-on-the-driver.md).

The worker's batch transaction runs ~8 statements of a fixed shape per batch of a few events.
Through ``AsyncSession.execute`` each one costs a ``text()`` construct, a cache key, a compiled
cache lookup, an execution context, a greenlet switch and a result wrapper; asyncpg's own
``fetch`` with its prepared-statement cache does the same work for a fraction of the CPU. The
statements still run in the session's transaction: ``driver`` makes sure the BEGIN was sent
(SQLAlchemy's asyncpg adapter sends it lazily, with the first statement it executes), so
``session_scope`` commits or rolls them back with everything else. The worker's batcher goes
further: it holds one pooled connection while events keep coming and runs each batch in
asyncpg's own transaction on it (``held_connection``), without an ORM session at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

_KEY = "notifier.driver"


#: what the group commit's repository functions take: a session, or the asyncpg connection
#: of a transaction the caller manages itself (``held_connection``)
Db: TypeAlias = AsyncSession | asyncpg.Connection


async def driver(db: Db) -> Any:
    """The ``asyncpg.Connection`` of ``db``'s transaction, BEGIN sent (looked up once per
    session transaction); an asyncpg connection is returned as it is."""
    if not isinstance(db, AsyncSession):
        return db
    session = db
    transaction = session.sync_session.get_transaction()
    found = session.info.get(_KEY)
    if found is not None and transaction is not None and found[0] is transaction:
        return found[1]
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection  # SQLAlchemy's AsyncAdapt_asyncpg_connection
    if adapted._transaction is None:  # the adapter begins with its first statement
        await adapted._start_transaction()
    connection = fairy.driver_connection
    session.info[_KEY] = (session.sync_session.get_transaction(), connection)
    return connection


@asynccontextmanager
async def held_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    """An asyncpg connection checked out of the sessionmaker's engine pool for as long as the
    block runs, for transactions run with asyncpg's own ``transaction()`` (no ORM session:
    ~0.4 ms of CPU less per transaction here). If it was closed under us (a dropped
    connection) or left inside a transaction, it is invalidated rather than returned to the
    pool."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        driver_connection: Any = fairy.driver_connection
        try:
            yield driver_connection
        finally:
            if driver_connection.is_closed() or driver_connection.is_in_transaction():
                await conn.invalidate()
