"""The round trips of a path on an engine's connections: the statements SQLAlchemy executes and
those run on asyncpg's connection below it (the driver, decisions 0070 and 0107: they never
pass through SQLAlchemy's execute events), with asyncpg's BEGIN and COMMIT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

#: what asyncpg sends once per connection to learn a type it has not seen (not the path's own)
_INTROSPECTION = (
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config",
)


@asynccontextmanager
async def round_trips(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """The statements (their first four words) run on the connections of ``engine`` while the
    block runs, in order within each source (asyncpg reports a statement with ``call_soon``
    once it finished, so one from SQLAlchemy may be listed before it). asyncpg's query log
    sees what runs on its ``Connection`` (BEGIN, COMMIT, the driver's statements);
    SQLAlchemy's go through asyncpg's prepared statements, which it does not log: they are
    seen by SQLAlchemy's cursor event."""
    statements: list[str] = []
    watched: list[Any] = []

    def add(sql: str) -> None:
        words = " ".join(sql.split()[:4])
        if not words.startswith(_INTROSPECTION):
            statements.append(words)

    def logged(record: Any) -> None:
        add(record.query)

    def executed(*args: Any) -> None:
        add(args[2])

    def watch(dbapi_connection: Any, *_: Any) -> None:
        watched.append(dbapi_connection.driver_connection)
        watched[-1].add_query_logger(logged)

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "checkout", watch)
    event.listen(sync_engine, "before_cursor_execute", executed)
    try:
        yield statements
        await asyncio.sleep(0)  # asyncpg hands each logged query over with call_soon
    finally:
        event.remove(sync_engine, "checkout", watch)
        event.remove(sync_engine, "before_cursor_execute", executed)
        for connection in watched:
            connection.remove_query_logger(logged)
