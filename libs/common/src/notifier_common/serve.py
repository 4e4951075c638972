"""The ``api`` command both services' console scripts share (uvicorn on an app factory)."""

from collections.abc import Callable
from typing import Annotated

import typer


def add_api_command(
    app: typer.Typer,
    *,
    factory: str,
    default_host: Callable[[], str],
    default_port: Callable[[], int],
    help: str,
) -> None:
    """Register ``api [--host] [--port] [--workers]`` running ``factory`` (``module:function``)."""

    @app.command("api", help=help)
    def api(
        host: Annotated[str | None, typer.Option(help="Bind host")] = None,
        port: Annotated[int | None, typer.Option(help="Bind port")] = None,
        workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    ) -> None:
        import uvicorn

        uvicorn.run(
            factory,
            factory=True,
            host=host or default_host(),
            port=port or default_port(),
            workers=workers,
            log_config=None,
            proxy_headers=True,
        )
