"""SQL of the configuration area: letter setting rows and their audit trail."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import LetterSetting


async def get_setting(
    session: AsyncSession, letter: str, *, lock: bool = False
) -> LetterSetting | None:
    stmt = select(LetterSetting).where(LetterSetting.letter == letter)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def all_settings(session: AsyncSession) -> dict[str, LetterSetting]:
    rows = (await session.execute(select(LetterSetting))).scalars()
    return {row.letter: row for row in rows}
