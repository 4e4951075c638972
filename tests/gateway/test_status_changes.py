"""``GET /v1/status-changes``: the feed of webhook-driven message statuses the notifier pulls."""

from __future__ import annotations

import httpx
import pytest
from gateway.settings import GatewaySettings

from tests.gateway.conftest import COUNTING, SettingsFactory, email
from tests.gateway.test_webhooks import SECRET, hook, send


@pytest.fixture
def gateway_settings(make_settings: SettingsFactory) -> GatewaySettings:
    return make_settings(providers={"counting": {"kind": COUNTING, "webhook": {"secret": SECRET}}})


async def deliver(client: httpx.AsyncClient, writer: dict[str, str], key: str) -> str:
    sent = await send(client, writer, key, email(f"{key}@example.com"))
    return str(sent["provider_message_id"])


class TestStatusChanges:
    async def test_moved_messages_come_oldest_first_with_their_current_status(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        a, b, c = [await deliver(client, writer, k) for k in ("k1", "k2", "k3")]
        await hook(client, "counting", {"id": "e1", "type": "delivered", "provider_message_id": a})
        await hook(client, "counting", {"id": "e2", "type": "delivered", "provider_message_id": b})
        await hook(client, "counting", {"id": "e3", "type": "bounced", "provider_message_id": a})
        soft = {"id": "e4", "type": "bounced", "bounce_type": "soft", "provider_message_id": c}
        await hook(client, "counting", soft)  # moves nothing: not in the feed
        r = await client.get("/v1/status-changes", headers=writer)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [(i["idempotency_key"], i["status"]) for i in items] == [
            ("k1", "bounced"),  # e1: the message's status now, not the event's
            ("k2", "delivered"),
            ("k1", "bounced"),
        ]
        assert r.json()["next_cursor"] is None

    async def test_pages_and_since(self, client: httpx.AsyncClient, writer: dict[str, str]) -> None:
        for n in range(3):
            pm = await deliver(client, writer, f"k{n}")
            event = {"id": f"e{n}", "type": "delivered", "provider_message_id": pm}
            await hook(client, "counting", event)
        first = (await client.get("/v1/status-changes?limit=2", headers=writer)).json()
        assert [i["idempotency_key"] for i in first["items"]] == ["k0", "k1"]
        rest = await client.get(
            "/v1/status-changes", params={"cursor": first["next_cursor"]}, headers=writer
        )
        assert [i["idempotency_key"] for i in rest.json()["items"]] == ["k2"]
        since = first["items"][1]["received_at"]
        newer = await client.get("/v1/status-changes", params={"since": since}, headers=writer)
        assert [i["idempotency_key"] for i in newer.json()["items"]] == ["k1", "k2"]

    async def test_a_bad_cursor_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.get("/v1/status-changes?cursor=nope", headers=writer)
        assert r.status_code == 422
