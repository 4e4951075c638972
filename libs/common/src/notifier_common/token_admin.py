"""Token administration against a database URL, shared by both services' CLIs (and seeding)."""

import asyncio
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from notifier_common.db import create_engine, create_sessionmaker, session_scope
from notifier_common.tokens import TokenModel, TokenRepository


class TokenAdmin:
    """Create, revoke and list one service's tokens; each call owns a short-lived engine."""

    def __init__(self, model: type[TokenModel], *, app_name: str) -> None:
        self.repository = TokenRepository(model)
        self.app_name = app_name

    async def create(self, database_url: str, *, name: str, scopes: Sequence[str]) -> str:
        """A new token; its secret is returned once and stored only hashed."""
        engine = create_engine(database_url, pool_size=1, app_name=self.app_name)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                _, raw = await self.repository.create(session, name=name, scopes=scopes)
            return raw
        finally:
            await engine.dispose()

    async def revoke(self, database_url: str, token_id: int) -> bool:
        engine = create_engine(database_url, pool_size=1, app_name=self.app_name)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await self.repository.revoke(session, token_id)
        finally:
            await engine.dispose()

    async def list(self, database_url: str) -> list[Any]:
        engine = create_engine(database_url, pool_size=1, app_name=self.app_name)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await self.repository.list(session)
        finally:
            await engine.dispose()


def token_cli(
    admin: TokenAdmin, *, scopes: Sequence[str], database_url: Callable[[], str]
) -> typer.Typer:
    """``token create / revoke / list`` commands for a service's console script."""
    cli = typer.Typer(help="API tokens.", no_args_is_help=True)

    @cli.command("create")
    def create(
        name: Annotated[str, typer.Option(help="Who uses the token")],
        scope: Annotated[list[str], typer.Option(help=f"Repeatable; one of {', '.join(scopes)}")],
    ) -> None:
        """Create a token; the secret is printed once."""
        unknown = sorted(set(scope) - set(scopes))
        if unknown:
            raise typer.BadParameter(f"unknown scope(s) {unknown}; choose from {list(scopes)}")
        typer.echo(asyncio.run(admin.create(database_url(), name=name, scopes=scope)))

    @cli.command("revoke")
    def revoke(token_id: int) -> None:
        """Revoke a token by id."""
        if not asyncio.run(admin.revoke(database_url(), token_id)):
            typer.echo(f"no active token {token_id}", err=True)
            raise typer.Exit(1)
        typer.echo(f"revoked {token_id}")

    @cli.command("list")
    def list_() -> None:
        """List tokens (never their secrets)."""
        for row in asyncio.run(admin.list(database_url())):
            state = "revoked" if row.revoked_at else "active"
            typer.echo(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{state}")

    return cli
