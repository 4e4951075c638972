"""``gateway`` console script."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from notifier_common.logging import configure_logging
from notifier_common.serve import add_api_command
from notifier_common.token_admin import token_cli

from gateway.deps import SCOPES
from gateway.settings import get_settings
from gateway.tokens import admin

app = typer.Typer(help="notifier delivery gateway.", no_args_is_help=True)
suppressions_app = typer.Typer(help="Suppressed addresses.", no_args_is_help=True)
app.add_typer(
    token_cli(admin, scopes=SCOPES, database_url=lambda: get_settings().database_url),
    name="token",
)
app.add_typer(suppressions_app, name="suppressions")


@app.callback()
def _logs_to_stderr() -> None:
    """Log lines go to stderr (``api`` and ``worker`` configure them again from the settings):
    stdout is the command's output, e.g. ``--json`` piped to jq."""
    configure_logging()


add_api_command(
    app,
    factory="gateway.app:create_app",
    default_host=lambda: get_settings().api_host,
    default_port=lambda: get_settings().api_port,
    help="Run the gateway API (uvicorn).",
)


@app.command()
def openapi() -> None:
    """Print the gateway's OpenAPI JSON to stdout."""
    from gateway.app import create_app

    json.dump(create_app(get_settings()).openapi(), sys.stdout, indent=2)
    sys.stdout.write("\n")


async def _suppressions(
    database_url: str, *, address: str | None, scope: str | None, limit: int
) -> list[Any]:
    from notifier_common.db import create_engine, create_sessionmaker, session_scope

    from gateway.messages.dispatch import normalize_address
    from gateway.suppressions import repository

    engine = create_engine(database_url, pool_size=1, app_name="gateway-cli")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return await repository.list_page(
                session,
                address=normalize_address(address) if address else None,
                scope=scope,
                since=None,
                after=None,
                limit=limit,
            )
    finally:
        await engine.dispose()


@suppressions_app.command("list")
def suppressions_list(
    address: Annotated[str | None, typer.Option(help="Only this address")] = None,
    scope: Annotated[str | None, typer.Option(help="Only this scope")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows")] = 100,
) -> None:
    """List suppressions, oldest first (id, address, scope, reason, source, created_at)."""
    rows = asyncio.run(
        _suppressions(get_settings().database_url, address=address, scope=scope, limit=limit)
    )
    for row in rows:
        typer.echo(
            f"{row.id}\t{row.address}\t{row.scope}\t{row.reason}\t{row.source}\t"
            f"{row.created_at.isoformat()}"
        )


if __name__ == "__main__":
    app()
