"""Token administration for the CLI (and tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from notifier_common.auth import TokenRepository
from notifier_common.db import create_engine, create_sessionmaker, session_scope

from gateway.models import ApiToken

repository = TokenRepository(ApiToken)


async def create_token(database_url: str, *, name: str, scopes: Sequence[str]) -> str:
    engine = create_engine(database_url, pool_size=1, app_name="gateway-cli")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            _, raw = await repository.create(session, name=name, scopes=scopes)
        return raw
    finally:
        await engine.dispose()


async def revoke_token(database_url: str, token_id: int) -> bool:
    engine = create_engine(database_url, pool_size=1, app_name="gateway-cli")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return await repository.revoke(session, token_id)
    finally:
        await engine.dispose()


async def list_tokens(database_url: str) -> list[Any]:
    engine = create_engine(database_url, pool_size=1, app_name="gateway-cli")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return await repository.list(session)
    finally:
        await engine.dispose()
