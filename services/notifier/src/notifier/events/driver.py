"""The asyncpg connection under a session's transaction, for the group commit's hot statements
(docs/decisions/0070-group-commit-on-the-driver.md).

The worker's batch transaction runs ~8 statements of a fixed shape per batch of a few events.
Through ``AsyncSession.execute`` each one costs a ``text()`` construct, a cache key, a compiled
cache lookup, an execution context, a greenlet switch and a result wrapper; asyncpg's own
``fetch`` with its prepared-statement cache does the same work for a fraction of the CPU. The
statements still run in the session's transaction: ``driver`` makes sure the BEGIN was sent
(SQLAlchemy's asyncpg adapter sends it lazily, with the first statement it executes), so
``session_scope`` commits or rolls them back with everything else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

_KEY = "notifier.driver"


async def driver(session: AsyncSession) -> Any:
    """The ``asyncpg.Connection`` of ``session``'s transaction, BEGIN sent (looked up once per
    transaction)."""
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
