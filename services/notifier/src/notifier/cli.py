"""``notifier`` console script."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer

from notifier.settings import get_settings

app = typer.Typer(help="notifier: event-driven letters.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

SCOPES = ("events:write", "letters:read", "letters:write", "config:write", "admin")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind host")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run notifier-api (uvicorn)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "notifier.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        proxy_headers=True,
    )


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty")] = False,
) -> None:
    """Run notifier-worker (arq: handle_event jobs, per-minute drain)."""
    from notifier.worker import create_worker

    create_worker(burst=burst).run()


@app.command()
def migrate(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply database migrations (both schemas)."""
    from notifier.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo(f"migrated to {revision}")


@app.command()
def openapi() -> None:
    """Print the notifier API's OpenAPI JSON to stdout."""
    from notifier.api.app import create_app

    json.dump(create_app().openapi(), sys.stdout, indent=2)
    sys.stdout.write("\n")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who uses the token")],
    scope: Annotated[list[str], typer.Option(help=f"Repeatable; one of {', '.join(SCOPES)}")],
) -> None:
    """Create a token; the secret is printed once."""
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {unknown}; choose from {list(SCOPES)}")
    from notifier.auth.tokens import create_token

    raw = asyncio.run(create_token(get_settings().database_url, name=name, scopes=scope))
    typer.echo(raw)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token by id."""
    from notifier.auth.tokens import revoke_token

    if not asyncio.run(revoke_token(get_settings().database_url, token_id)):
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {token_id}")


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    from notifier.auth.tokens import list_tokens

    for row in asyncio.run(list_tokens(get_settings().database_url)):
        state = "revoked" if row.revoked_at else "active"
        typer.echo(f"{row.id}\t{row.name}\t{','.join(row.scopes)}\t{state}")


def _register_operator_commands() -> None:
    from notifier.operator.cli import register

    register(app)


_register_operator_commands()


if __name__ == "__main__":
    app()
