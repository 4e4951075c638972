"""Every SQL query about provider switches."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import ProviderSwitch, ProviderSwitchChange


async def get(session: AsyncSession, name: str) -> ProviderSwitch | None:
    return await session.get(ProviderSwitch, name)


async def set_switch(
    session: AsyncSession, name: str, *, enabled: bool, changed_by: str, reason: str | None
) -> None:
    """Upsert the switch and append an audit row, in the caller's transaction."""
    values = {"provider": name, "enabled": enabled, "changed_by": changed_by, "reason": reason}
    stmt = insert(ProviderSwitch).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ProviderSwitch.provider],
        set_={
            "enabled": enabled,
            "changed_by": changed_by,
            "reason": reason,
            "changed_at": func.now(),
        },
    )
    await session.execute(stmt)
    session.add(ProviderSwitchChange(**values))
    await session.flush()


async def history(session: AsyncSession, name: str, *, limit: int) -> list[ProviderSwitchChange]:
    stmt = (
        select(ProviderSwitchChange)
        .where(ProviderSwitchChange.provider == name)
        .order_by(ProviderSwitchChange.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())
