"""Effective switch state: the operator's override, else the provider's ``enabled`` setting."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.integrations import repository
from gateway.settings import GatewaySettings


async def disabled_providers(
    session: AsyncSession, settings: GatewaySettings, names: Iterable[str]
) -> set[str]:
    wanted = {n for n in names if n in settings.providers}
    if not wanted:
        return set()
    overrides = await repository.switches(session, wanted)
    return {n for n in wanted if not overrides.get(n, settings.providers[n].enabled)}
