"""Request metrics of notifier_common.ops: counted per route template and status, by a plain
ASGI middleware (no BaseHTTPMiddleware task group around each request and body chunk)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException, Request
from notifier_common.ops import HTTP_LATENCY, HTTP_REQUESTS, install_metrics_middleware
from starlette.middleware.base import BaseHTTPMiddleware


def _app(service: str) -> FastAPI:
    app = FastAPI()
    install_metrics_middleware(app, service)

    @app.post("/items/{item_id}")
    async def post_item(item_id: int, request: Request) -> dict[str, int]:
        return {"id": item_id, "size": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise HTTPException(409, "no")

    return app


def _count(service: str, method: str, route: str, status: str) -> float:
    return HTTP_REQUESTS.labels(service, method, route, status)._value.get()


async def test_requests_are_counted_by_route_template_and_status() -> None:
    service = "test-ops-metrics"
    transport = httpx.ASGITransport(app=_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.post("/items/7", content=b"x" * 200_000)
        await client.post("/items/8", content=b"{}")
        await client.get("/boom")
        await client.get("/nowhere")

    assert ok.json() == {"id": 7, "size": 200_000}
    assert _count(service, "POST", "/items/{item_id}", "200") == 2
    assert _count(service, "GET", "/boom", "409") == 1
    assert _count(service, "GET", "unmatched", "404") == 1
    assert HTTP_LATENCY.labels(service, "POST", "/items/{item_id}")._sum.get() > 0


def test_the_middleware_is_plain_asgi() -> None:
    app = _app("test-ops-plain")
    assert not any(issubclass(m.cls, BaseHTTPMiddleware) for m in app.user_middleware)  # type: ignore[arg-type]
