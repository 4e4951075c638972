"""``notifier`` console script."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from notifier_common.logging import configure_logging
from notifier_common.serve import add_api_command
from notifier_common.token_admin import token_cli

from notifier.auth.tokens import admin
from notifier.settings import get_settings

SCOPES = ("events:write", "letters:read", "letters:write", "config:write", "admin")

app = typer.Typer(help="notifier: event-driven letters.", no_args_is_help=True)
app.add_typer(
    token_cli(admin, scopes=SCOPES, database_url=lambda: get_settings().database_url),
    name="token",
)


@app.callback()
def _logs_to_stderr() -> None:
    """Log lines go to stderr (``api`` and ``worker`` configure them again from the settings):
    stdout is the command's output, e.g. ``--json`` piped to jq."""
    configure_logging()


add_api_command(
    app,
    factory="notifier.api.app:create_app",
    default_host=lambda: get_settings().api_host,
    default_port=lambda: get_settings().api_port,
    help="Run notifier-api (uvicorn).",
)


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty")] = False,
) -> None:
    """Run notifier-worker (arq: handle_event jobs, per-minute drain)."""
    from notifier.worker import create_worker, use_uvloop

    use_uvloop()
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


def _register_operator_commands() -> None:
    from notifier.operator.cli import register
    from notifier.suppressions.cli import suppressions_app

    register(app)
    app.add_typer(suppressions_app, name="suppressions")


_register_operator_commands()


if __name__ == "__main__":
    app()
