"""The messages routes validate JSON bodies before FastAPI's handler (decision 0053).

A small app with the gateway's ``JsonRoute`` and the gateway's own body models; nothing here
talks to a database."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from gateway.messages.endpoints import JsonRoute
from gateway.messages.schemas import BatchRequest
from gateway.providers.base import Message
from notifier_common.errors import install_error_handlers

from tests.gateway.conftest import email

SEEN: dict[str, Any] = {}


def _app() -> FastAPI:
    router = APIRouter(route_class=JsonRoute)

    @router.post("/batch")
    async def batch(body: BatchRequest, request: Request) -> dict[str, Any]:
        SEEN["body"] = body
        SEEN["raw"] = await request.body()
        return {"items": len(body.items)}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t")


def _batch(**message: Any) -> dict[str, Any]:
    return {"items": [{"idempotency_key": "k", "message": email(**message)}]}


class TestJsonRoute:
    async def test_the_handler_gets_the_model_and_the_body_is_not_kept(self) -> None:
        async with _client() as c:
            r = await c.post("/batch", json=_batch(metadata={"n": 2**70}))

        assert r.json() == {"items": 1}
        assert SEEN["body"].items[0].message.metadata == {"n": 2**70}
        # the bytes were released once validated; the request no longer holds them
        assert len(SEEN["raw"]) < 10

    async def test_an_invalid_body_gets_fastapi_s_422(self) -> None:
        async with _client() as c:
            r = await c.post("/batch", json=_batch(to=[]))

        assert r.status_code == 422
        [error] = r.json()["errors"]
        assert error["loc"] == "body.items.0.message.to"
        assert error["type"] == "too_short"

    async def test_invalid_json_and_other_content_types_are_fastapi_s(self) -> None:
        async with _client() as c:
            broken = await c.post(
                "/batch", content=b'{"items": [', headers={"Content-Type": "application/json"}
            )
            text = await c.post("/batch", content=b"{}", headers={"Content-Type": "text/plain"})
            empty = await c.post("/batch", headers={"Content-Type": "application/json"})

        assert broken.status_code == 422
        assert broken.json()["errors"][0]["type"] == "json_invalid"
        assert text.status_code == 422
        assert empty.status_code == 422
        assert empty.json()["errors"][0]["type"] == "missing"


class TestReceivedJson:
    def test_validating_a_message_runs_no_python_hook(self) -> None:
        # a private attribute made pydantic call a Python post-init for every message
        assert Message.__private_attributes__ == {}
        assert Message.__pydantic_post_init__ is None

    def test_received_json_is_kept_by_the_message_and_not_by_its_copies(self) -> None:
        message = Message.model_validate(email())
        assert message.received_json is None

        message.remember_json(b'{"channel":"email"}')

        assert message.received_json == b'{"channel":"email"}'
        assert message.model_copy(update={"subject": "Other"}).received_json is None
        assert message == Message.model_validate(email())  # not part of the model's value
