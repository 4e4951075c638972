"""The gateway client's request body (docs/decisions/0047) and the call over HTTP (respx)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from notifier.gateway_client import (
    GatewayClient,
    GatewayItem,
    GatewayMessage,
    GatewayRecipient,
    encode_batch,
    encode_item,
    encode_message,
    join_items,
)
from pydantic import BaseModel, ValidationError

GATEWAY = "http://gateway.test"


class _Pydantic(BaseModel):
    """What the body used to be: pydantic's own JSON of the same items."""

    items: list[GatewayItem]


def items() -> list[GatewayItem]:
    return [
        GatewayItem(
            idempotency_key="letter-1",
            message=GatewayMessage(
                channel="email",
                to=[GatewayRecipient(address="boss@acme.example", name="ACME «Такси»")],
                subject="Баланс ниже порога — пополните счёт",
                html='<p>a &amp; b</p>\n<a href="https://x/?a=1&amp;b=2">pay</a>',
                text="line 1\nline 2\n",
                unsubscribe_url="https://notifier.example/u/abc",
                metadata={"letter_id": 1, "letter": "LowBalanceNotice", "client_id": "c-1"},
            ),
        ),
        GatewayItem(  # optional fields left out; Nones inside metadata kept, as pydantic does
            idempotency_key="letter-2",
            message=GatewayMessage(
                channel="email",
                to=[GatewayRecipient(address="a@b.example"), GatewayRecipient(name="only name")],
                headers={"X-Tag": "t"},
                metadata={"none": None, "nested": {"x": None}, "list": [1, None]},
            ),
        ),
        GatewayItem(  # values JSON has no type for: rendered the way pydantic renders them
            idempotency_key="letter-3",
            message=GatewayMessage(
                channel="webhook",
                to=[GatewayRecipient()],
                metadata={"amount": Decimal("12.50"), "at": datetime(2026, 6, 1, tzinfo=UTC)},
            ),
        ),
    ]


def test_the_body_is_the_json_pydantic_made() -> None:
    expected = json.loads(_Pydantic(items=items()).model_dump_json(exclude_none=True))
    assert json.loads(encode_batch(items())) == expected


def test_the_body_is_utf8_json_bytes() -> None:
    body = encode_batch(items())
    assert isinstance(body, bytes)
    assert "Баланс".encode() in body  # not \\u-escaped


def test_an_empty_batch_is_an_empty_list() -> None:
    assert json.loads(encode_batch([])) == {"items": []}


async def test_send_batch_posts_the_body_and_maps_results() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/json"
        body = json.loads(request.content)
        seen.append(body)
        results = [
            {"idempotency_key": i["idempotency_key"], "outcome": "accepted", "provider": "log"}
            for i in body["items"][:2]
        ]
        return httpx.Response(200, json={"results": results})

    async with httpx.AsyncClient() as http:
        client = GatewayClient(http, base_url=GATEWAY, token="t")
        with respx.mock() as mock:
            mock.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=answer)
            results = await client.send_batch(items())
    assert [i["idempotency_key"] for i in seen[0]["items"]] == ["letter-1", "letter-2", "letter-3"]
    assert results["letter-1"].outcome == "accepted"
    assert results["letter-3"].outcome == "transient_error"  # not answered
    assert results["letter-3"].code == "no_result"


def test_items_encoded_one_by_one_join_into_the_same_body() -> None:
    encoded = [encode_item(item) for item in items()]
    assert join_items(encoded) == encode_batch(items())
    assert join_items(encoded[:1]) == encode_batch(items()[:1])
    assert join_items([]) == encode_batch([]) == b'{"items":[]}'


def accept_all(request: httpx.Request) -> httpx.Response:
    """The gateway's answer accepting every item of a batch request."""
    results = [
        {"idempotency_key": i["idempotency_key"], "outcome": "accepted"}
        for i in json.loads(request.content)["items"]
    ]
    return httpx.Response(200, json={"results": results})


async def test_send_encoded_posts_what_send_batch_posts() -> None:
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return accept_all(request)

    async with httpx.AsyncClient() as http:
        client = GatewayClient(http, base_url=GATEWAY, token="t", batch_size=2)
        with respx.mock() as mock:
            mock.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=answer)
            by_models = await client.send_batch(items())
            encoded = [(item.idempotency_key, encode_item(item)) for item in items()]
            by_bytes = await client.send_encoded(encoded)
    assert bodies[:2] == bodies[2:]  # chunked the same way (2 + 1), same bytes
    assert bodies[0] == encode_batch(items()[:2])
    assert by_models.keys() == by_bytes.keys() == {"letter-1", "letter-2", "letter-3"}
    assert all(r.outcome == "accepted" for r in by_bytes.values())


async def test_send_encoded_lets_go_of_the_items_before_each_call() -> None:
    """Decision 0082: the caller's list is emptied as the bodies are built, so a drain does not
    hold a batch's encoded letters beside the request body during the gateway call."""
    encoded = [(item.idempotency_key, encode_item(item)) for item in items()]
    left_at_call: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        left_at_call.append(len(encoded))
        return accept_all(request)

    async with httpx.AsyncClient() as http:
        client = GatewayClient(http, base_url=GATEWAY, token="t", batch_size=2)
        with respx.mock() as mock:
            mock.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=answer)
            results = await client.send_encoded(encoded)
    assert left_at_call == [1, 0]  # chunk 1 (2 items) left one; chunk 2 left none
    assert encoded == []
    assert set(results) == {"letter-1", "letter-2", "letter-3"}


LETTER_FIELDS: dict[str, Any] = {
    "channel": "email",
    "address": "boss@acme.example",
    "subject": "Баланс ниже порога — пополните счёт",
    "html": '<p>a &amp; b</p>\n<a href="https://x/?a=1&amp;b=2">pay</a> \u2028 "q" \\',
    "text": "line 1\nline 2\n\t\x00\x1f",
    "unsubscribe_url": "https://notifier.example/v1/unsubscribe/42.abc",
    "metadata": {"letter_id": 2**40, "letter": "LowBalanceNotice", "client_id": "c-1"},
}


@pytest.mark.parametrize("name", [None, "ACME «Такси»", "", 'a "quoted" \\ name'])
def test_encode_message_is_encode_item_of_the_same_models(name: str | None) -> None:
    """Decision 0065: the drain encodes letters without the models, to the same bytes."""
    fields = dict(LETTER_FIELDS)
    model = GatewayItem(
        idempotency_key="letter-42",
        message=GatewayMessage(
            channel=fields.pop("channel"),
            to=[GatewayRecipient(address=fields.pop("address"), name=name)],
            **fields,
        ),
    )
    assert encode_message("letter-42", name=name, **LETTER_FIELDS) == encode_item(model)


def test_encode_message_validates_a_name_of_another_type_as_the_models_do() -> None:
    with pytest.raises(ValidationError):
        encode_message("letter-42", name=12, **LETTER_FIELDS)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        encode_message("letter-42", name={"x": 1}, **LETTER_FIELDS)  # type: ignore[arg-type]
