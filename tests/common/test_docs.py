"""``/docs`` loads Swagger UI from the service itself, never from a CDN (decision 0100)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from gateway.app import create_app as create_gateway
from notifier.api.app import create_app as create_notifier
from notifier_common.docs import install_docs

APPS: dict[str, Callable[[], FastAPI]] = {"notifier": create_notifier, "gateway": create_gateway}


def client(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://service")


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize("name", APPS)
async def test_the_docs_page_loads_only_local_assets(name: str) -> None:
    async with client(APPS[name]()) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = referenced(page.text)
        assert sorted(urls) == [
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/assets/swagger-ui.css",
        ]
        assert "http" not in page.text.replace("http://service", "")  # no CDN, no other host
        assert "url: '/openapi.json'" in page.text

        kinds = {}
        for url in urls:
            asset = await http.get(url)
            assert asset.status_code == 200, url
            kinds[url.rsplit(".", 1)[1]] = (asset.headers["content-type"], len(asset.content))
        assert kinds["js"][0].startswith(("text/javascript", "application/javascript"))
        assert kinds["js"][1] > 500_000  # the whole bundle, not a loader that fetches the rest
        assert kinds["css"][0].startswith("text/css")
        assert (await http.get("/docs/assets/nothing.js")).status_code == 404


@pytest.mark.parametrize("name", APPS)
async def test_the_swagger_ui_renders_the_openapi_version_the_app_writes(name: str) -> None:
    """FastAPI writes OpenAPI 3.1; Swagger UI 4 shows "Unable to render this definition" for it."""
    async with client(APPS[name]()) as http:
        spec = (await http.get("/openapi.json")).json()
        bundle = (await http.get("/docs/assets/swagger-ui-bundle.js")).text
    assert spec["openapi"].startswith("3.1")
    assert "isOAS31" in bundle  # Swagger UI 5's OpenAPI 3.1 support (absent from 4.x)


@pytest.mark.parametrize("name", APPS)
async def test_behind_a_proxy_prefix_the_page_asks_for_prefixed_urls(name: str) -> None:
    async with client(APPS[name](), root_path="/mail") as http:
        page = await http.get("/docs")
    assert page.status_code == 200
    assert "/mail/docs/assets/swagger-ui-bundle.js" in referenced(page.text)
    assert "url: '/mail/openapi.json'" in page.text


@pytest.mark.parametrize("name", APPS)
async def test_no_cdn_pages_are_left(name: str) -> None:
    async with client(APPS[name]()) as http:
        assert (await http.get("/redoc")).status_code == 404
        assert (await http.get("/docs/oauth2-redirect")).status_code == 404


def test_installing_over_fastapis_own_docs_is_refused() -> None:
    with pytest.raises(RuntimeError, match="docs_url=None"):
        install_docs(FastAPI())
