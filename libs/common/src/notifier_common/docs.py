"""``/docs``: the Swagger UI served by the service itself (decision 0100).

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from cdn.jsdelivr.net (and
its favicon from fastapi.tiangolo.com): on a network without that CDN (an internal network, a
country that blocks it) the page stays blank. Here the same page loads them from
``/docs/assets/``, files shipped in the ``fastapi-swagger`` wheel (Swagger UI 5, which renders
the OpenAPI 3.1 documents FastAPI writes).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def assets_dir() -> Path:
    """Swagger UI's files (``swagger-ui-bundle.js``, ``swagger-ui.css``, a favicon)."""
    return Path(str(files("fastapi_swagger") / "resources"))


def install_docs(app: FastAPI) -> None:
    """``GET /docs`` (the Swagger UI page) and ``/docs/assets/*`` on an app created with
    ``docs_url=None``. Paths honour a proxy's ``root_path``, as FastAPI's own page does."""
    if app.docs_url is not None:  # two /docs routes: the first (the CDN one) would win
        raise RuntimeError("create the app with docs_url=None to install the local /docs")
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} - API docs"

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )
