"""The worker's letter settings cache: an operator's change is used within the TTL, not later."""

from __future__ import annotations

from notifier.letters import settings_service
from notifier.letters.settings_service import SettingsCache
from notifier_common.db import session_scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def switch_off(sessionmaker: async_sessionmaker[AsyncSession], letter: str) -> None:
    async with session_scope(sessionmaker) as s:
        await settings_service.update(s, letter, enabled=False, changed_by="ops")


class TestSettingsCache:
    async def test_a_change_is_seen_once_the_ttl_passed(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        ticks = Ticks()
        cache = SettingsCache(sessionmaker, ttl=5, clock=ticks)
        assert (await cache.get())["LowBalanceNotice"].enabled is True
        await switch_off(sessionmaker, "LowBalanceNotice")
        ticks.now += 4.9
        assert (await cache.get())["LowBalanceNotice"].enabled is True  # stale within the TTL
        ticks.now += 0.2
        assert (await cache.get())["LowBalanceNotice"].enabled is False

    async def test_ttl_zero_reads_every_time(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        cache = SettingsCache(sessionmaker, ttl=0)
        assert (await cache.get())["LowBalanceNotice"].enabled is True
        await switch_off(sessionmaker, "LowBalanceNotice")
        assert (await cache.get())["LowBalanceNotice"].enabled is False

    async def test_every_letter_of_the_catalog_has_settings(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        from notifier.letters.definitions import LETTERS

        assert set(await SettingsCache(sessionmaker, ttl=5).get()) == set(LETTERS.names())
