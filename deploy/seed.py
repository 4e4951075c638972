"""Demo configuration for ``make run``; every step is idempotent (run it as often as you like).

Extend it by appending an ``async def step(ctx: SeedContext) -> None`` to :data:`STEPS` (or by
calling :func:`register` from your own module imported here). A step opens its own transaction
with ``async with ctx.session() as session`` and records anything worth printing in
``ctx.notes``. Tokens are stored hashed, so the raw development tokens are remembered in
``<state dir>/dev-tokens.json`` and reused while they are still active in the database.

``python -m deploy.seed`` seeds the database at ``NOTIFIER_DATABASE_URL`` (docker compose runs it
as the one-shot ``seed`` service) and prints the tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier_common.auth import TokenRepository, hash_token
from notifier_common.db import create_engine, create_sessionmaker, session_scope
from notifier_common.settings import DEFAULT_SECRET
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

DEV_TOKEN_NAME = "dev"
GATEWAY_TOKEN_NAME = "notifier"
#: ``admin`` at the gateway: the notifier's operator API flips provider switches and reads their
#: history through it (docs/operator-api.md "Integrations")
GATEWAY_SCOPES = ("messages:write", "messages:read", "admin")


@dataclass
class SeedContext:
    database_url: str
    state_dir: Path
    engine: AsyncEngine
    tokens: dict[str, str] = field(default_factory=dict)  # what the steps produced, by role
    notes: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with session_scope(create_sessionmaker(self.engine)) as session:
            yield session

    @property
    def token_file(self) -> Path:
        return self.state_dir / "dev-tokens.json"

    def remembered(self) -> dict[str, str]:
        try:
            data = json.loads(self.token_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def remember(self, key: str, raw: str) -> None:
        data = self.remembered() | {key: raw}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(json.dumps(data, indent=2) + "\n")
        self.token_file.chmod(0o600)


Step = Callable[[SeedContext], Awaitable[None]]


async def ensure_token(
    ctx: SeedContext, *, key: str, model: Any, name: str, scopes: Sequence[str]
) -> str:
    """The remembered token ``key`` if it is still active with these scopes, else a new one."""
    repository = TokenRepository(model)
    raw = ctx.remembered().get(key)
    async with ctx.session() as session:
        if raw:
            row = await repository.find_active(session, raw)
            if row is not None and set(row.scopes) == set(scopes):
                return raw
        _, raw = await repository.create(session, name=name, scopes=scopes)
    ctx.remember(key, raw)
    return raw


async def ensure_given_token(
    ctx: SeedContext, *, raw: str, model: Any, name: str, scopes: Sequence[str]
) -> str:
    """Register a token chosen outside (an env var shared with another container) if missing,
    and give it these scopes if it was registered with others (an earlier release's)."""
    repository = TokenRepository(model)
    wanted = sorted(set(scopes))
    async with ctx.session() as session:
        row = await repository.find_active(session, raw)
        if row is None:
            session.add(model(name=name, token_hash=hash_token(raw), scopes=wanted))
        elif sorted(set(row.scopes)) != wanted:
            row.scopes = wanted
    return raw


async def dev_api_token(ctx: SeedContext) -> None:
    """A notifier API token named ``dev`` with every scope."""
    from notifier.cli import SCOPES
    from notifier.models import ApiToken

    ctx.tokens["notifier"] = await ensure_token(
        ctx, key="notifier:dev", model=ApiToken, name=DEV_TOKEN_NAME, scopes=SCOPES
    )


async def gateway_token(ctx: SeedContext) -> None:
    """The token the notifier presents at the gateway (``NOTIFIER_GATEWAY_TOKEN``).

    If ``NOTIFIER_GATEWAY_TOKEN`` is set (not the shipped default), that token is registered at
    the gateway; otherwise one is generated and remembered.
    """
    from gateway.models import ApiToken

    given = os.environ.get("NOTIFIER_GATEWAY_TOKEN", "")
    if given and given != DEFAULT_SECRET:  # docker compose: both sides read it from .env
        ctx.tokens["gateway"] = await ensure_given_token(
            ctx, raw=given, model=ApiToken, name=GATEWAY_TOKEN_NAME, scopes=GATEWAY_SCOPES
        )
        return
    ctx.tokens["gateway"] = await ensure_token(
        ctx, key="gateway:notifier", model=ApiToken, name=GATEWAY_TOKEN_NAME, scopes=GATEWAY_SCOPES
    )


STEPS: list[Step] = [dev_api_token, gateway_token]


def register(step: Step) -> Step:
    """Decorator: add a seed step (runs after the built-in ones, in registration order)."""
    if step not in STEPS:
        STEPS.append(step)
    return step


async def seed(database_url: str, *, state_dir: Path | str = ".local") -> SeedContext:
    engine = create_engine(database_url, pool_size=1, app_name="notifier-seed")
    ctx = SeedContext(database_url=database_url, state_dir=Path(state_dir), engine=engine)
    try:
        for step in STEPS:
            await step(ctx)
    finally:
        await engine.dispose()
    return ctx


def main() -> None:
    from notifier.settings import NotifierSettings

    ctx = asyncio.run(seed(NotifierSettings().database_url))
    for role, raw in ctx.tokens.items():
        print(f"{role} token: {raw}")
    for note in ctx.notes:
        print(note)


if __name__ == "__main__":
    main()
