from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from notifier.models import Base
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _notifier_only(name: str | None, type_: str, _parent: Any) -> bool:
    return name == "notifier" if type_ == "schema" else True


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": _notifier_only,
            "compare_type": True,
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def test_the_notifier_models_match_the_migrations(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []
