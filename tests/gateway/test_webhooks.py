import json
import time
from typing import Any

import httpx
import pytest
from gateway.settings import GatewaySettings
from gateway.webhooks.auth import sign

from tests.gateway.conftest import COUNTING, SettingsFactory, email
from tests.gateway.fakes import CountingProvider

SECRET = "whsec-test"


@pytest.fixture
def gateway_settings(make_settings: SettingsFactory) -> GatewaySettings:
    return make_settings(
        providers={
            "counting": {"kind": COUNTING, "webhook": {"secret": SECRET}},
            "esp-main": {"kind": COUNTING, "webhook": {"secret": SECRET, "format": "esp"}},
            "smtp-main": {"kind": COUNTING, "webhook": {"secret": SECRET, "format": "smtp"}},
            "log": {
                "kind": "log",
                "webhook": {"scheme": "shared_secret", "secret": SECRET, "format": "neutral"},
            },
            "quiet": {"kind": COUNTING},
        }
    )


async def hook(
    client: httpx.AsyncClient,
    provider: str,
    body: Any,
    *,
    secret: str = SECRET,
    at: int | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    signature = sign(secret, raw, timestamp=at if at is not None else int(time.time()))
    return await client.post(
        f"/v1/providers/{provider}/webhooks",
        content=raw,
        headers={"X-Webhook-Signature": signature, "Content-Type": "application/json"},
    )


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], key: str, body: dict[str, Any]
) -> dict[str, Any]:
    r = await client.post("/v1/messages", json=body, headers={**headers, "Idempotency-Key": key})
    assert r.status_code == 200, r.text
    return dict(r.json())


class TestAuthentication:
    async def test_signed_webhook_is_accepted(self, client: httpx.AsyncClient) -> None:
        r = await hook(client, "counting", {"type": "delivered", "provider_message_id": "x"})
        assert r.status_code == 200
        assert r.json()["stored"] == 1

    async def test_wrong_signature_is_401(self, client: httpx.AsyncClient) -> None:
        r = await hook(client, "counting", {"type": "delivered"}, secret="guess")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"

    async def test_old_signature_is_401(self, client: httpx.AsyncClient) -> None:
        r = await hook(client, "counting", {"type": "delivered"}, at=int(time.time()) - 3600)
        assert r.status_code == 401

    async def test_tampered_body_is_401(self, client: httpx.AsyncClient) -> None:
        signature = sign(SECRET, b'{"type": "delivered"}', timestamp=int(time.time()))
        r = await client.post(
            "/v1/providers/counting/webhooks",
            content=b'{"type": "bounced"}',
            headers={"X-Webhook-Signature": signature},
        )
        assert r.status_code == 401

    async def test_missing_signature_is_401(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/providers/counting/webhooks", json={"type": "delivered"})
        assert r.status_code == 401

    async def test_shared_secret_header(self, client: httpx.AsyncClient) -> None:
        body = {"type": "delivered", "provider_message_id": "x"}
        ok = await client.post(
            "/v1/providers/log/webhooks", json=body, headers={"X-Webhook-Secret": SECRET}
        )
        bad = await client.post(
            "/v1/providers/log/webhooks", json=body, headers={"X-Webhook-Secret": "nope"}
        )
        assert (ok.status_code, bad.status_code) == (200, 401)

    @pytest.mark.parametrize("provider", ["quiet", "pigeon"])
    async def test_provider_without_webhook_config_is_404(
        self, client: httpx.AsyncClient, provider: str
    ) -> None:
        r = await hook(client, provider, {"type": "delivered"})
        assert r.status_code == 404

    async def test_unreadable_body_is_422(self, client: httpx.AsyncClient) -> None:
        r = await hook(client, "counting", {"type": "teleported"})
        assert r.status_code == 422


class TestEffects:
    async def test_hard_bounce_suppresses_and_the_next_message_is_skipped(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        sent = await send(client, writer, "k1", email("Alice@Example.com"))
        event = {
            "id": "evt-1",
            "type": "bounced",
            "bounce_type": "hard",
            "provider_message_id": sent["provider_message_id"],
        }
        r = await hook(client, "counting", {"events": [event]})
        assert (r.json()["messages_updated"], r.json()["suppressions_added"]) == (1, 1)
        shown = await client.get(f"/v1/messages/{sent['message_id']}", headers=writer)
        assert shown.json()["status"] == "bounced"
        listed = (await client.get("/v1/suppressions", headers=writer)).json()["items"]
        assert [(s["address"], s["scope"], s["reason"], s["source"]) for s in listed] == [
            ("alice@example.com", "*", "hard_bounce", "counting")
        ]
        nxt = await send(client, writer, "k2", email("alice@example.com"))
        assert (nxt["outcome"], nxt["code"]) == ("skipped", "suppressed")
        assert counting.calls == 1
        again = await send(client, writer, "k1", email("Alice@Example.com"))
        assert again["outcome"] == "accepted"  # the stored send result does not change

    async def test_repeated_event_is_applied_once(self, client: httpx.AsyncClient) -> None:
        event = {"id": "evt-1", "type": "complained", "address": "bob@example.com"}
        first = await hook(client, "counting", event)
        second = await hook(client, "counting", event)
        assert (first.json()["stored"], second.json()["stored"]) == (1, 0)
        assert second.json()["duplicates"] == 1

    async def test_soft_bounce_does_not_suppress(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        sent = await send(client, writer, "k1", email())
        body = {
            "type": "bounced",
            "bounce_type": "soft",
            "provider_message_id": sent["provider_message_id"],
        }
        r = await hook(client, "counting", body)
        assert (r.json()["stored"], r.json()["suppressions_added"]) == (1, 0)
        assert (await send(client, writer, "k2", email()))["outcome"] == "accepted"

    async def test_delivered_event_marks_the_message_delivered(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        sent = await send(client, writer, "k1", email())
        await hook(
            client,
            "counting",
            {"type": "delivered", "provider_message_id": sent["provider_message_id"]},
        )
        shown = (await client.get(f"/v1/messages/{sent['message_id']}", headers=writer)).json()
        assert shown["status"] == "delivered"
        assert shown["status_changed_at"] is not None

    async def test_event_for_another_providers_message_id_changes_nothing(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        sent = await send(client, writer, "k1", email())
        body = {"type": "delivered", "provider_message_id": sent["provider_message_id"]}
        r = await hook(
            client,
            "esp-main",
            [{"event": "delivered", **body, "message_id": body["provider_message_id"]}],
        )
        assert r.json()["messages_updated"] == 0

    async def test_unsubscribe_stops_only_its_scope(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        body = {"type": "unsubscribed", "address": "alice@example.com", "scope": "billing"}
        await hook(client, "counting", body)
        billing = email(metadata={"suppression_scope": "billing"})
        assert (await send(client, writer, "k1", billing))["code"] == "suppressed"
        assert (await send(client, writer, "k2", email()))["outcome"] == "accepted"
        assert counting.calls == 1

    async def test_suppressed_recipients_are_dropped_from_a_group_message(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        await hook(client, "counting", {"type": "complained", "address": "bob@example.com"})
        group = email(to=[{"address": "alice@example.com"}, {"address": "bob@example.com"}])
        assert (await send(client, writer, "k1", group))["outcome"] == "accepted"
        assert [r.address for r in counting.sent[0].to] == ["alice@example.com"]

    async def test_suppression_does_not_block_unsubscribe_actions(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        await hook(client, "counting", {"type": "complained", "address": "bob@example.com"})
        action = email("bob@example.com", action="unsubscribe", lists=["news"])
        assert (await send(client, writer, "k1", action))["outcome"] == "accepted"


class TestProviderFormats:
    async def test_esp_event_array(self, client: httpx.AsyncClient, writer: dict[str, str]) -> None:
        events = [
            {
                "event": "delivered",
                "email": "a@example.com",
                "sg_event_id": "e1",
                "message_id": "m1",
            },
            {"event": "bounce", "type": "bounce", "email": "b@example.com", "sg_event_id": "e2"},
            {"event": "bounce", "type": "blocked", "email": "c@example.com", "sg_event_id": "e3"},
            {"event": "spamreport", "email": "d@example.com", "sg_event_id": "e4"},
            {
                "event": "group_unsubscribe",
                "email": "e@example.com",
                "asm_group_id": 7,
                "sg_event_id": "e5",
            },
            {
                "event": "open",
                "email": "a@example.com",
                "sg_event_id": "e6",
                "timestamp": 1700000000,
            },
        ]
        r = await hook(client, "esp-main", events)
        assert r.status_code == 200
        assert (r.json()["received"], r.json()["ignored"], r.json()["stored"]) == (5, 1, 5)
        listed = (await client.get("/v1/suppressions", headers=writer)).json()["items"]
        assert sorted((s["address"], s["scope"], s["reason"]) for s in listed) == [
            ("b@example.com", "*", "hard_bounce"),
            ("d@example.com", "*", "complaint"),
            ("e@example.com", "group:7", "unsubscribe"),
        ]

    async def test_smtp_bounce_records(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        records = [
            {
                "RecordType": "Bounce",
                "Type": "HardBounce",
                "Email": "x@example.com",
                "ID": 1,
                "MessageID": "<abc@example.com>",
                "Description": "550 no such user",
            },
            {"RecordType": "Bounce", "Type": "SoftBounce", "Email": "y@example.com", "ID": 2},
            {
                "RecordType": "Delivery",
                "Recipient": "z@example.com",
                "MessageID": "<def@example.com>",
            },
        ]
        r = await hook(client, "smtp-main", records)
        assert (r.json()["stored"], r.json()["suppressions_added"]) == (3, 1)
        listed = (await client.get("/v1/suppressions", headers=writer)).json()["items"]
        assert [(s["address"], s["detail"]) for s in listed] == [
            ("x@example.com", "550 no such user")
        ]


class TestSuppressionsApi:
    async def test_feed_pages_oldest_first_and_filters(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        for i in range(3):
            await hook(client, "counting", {"type": "complained", "address": f"u{i}@example.com"})
        first = (await client.get("/v1/suppressions", params={"limit": 2}, headers=writer)).json()
        rest = (
            await client.get(
                "/v1/suppressions",
                params={"limit": 2, "cursor": first["next_cursor"]},
                headers=writer,
            )
        ).json()
        addresses = [s["address"] for s in first["items"] + rest["items"]]
        assert addresses == ["u0@example.com", "u1@example.com", "u2@example.com"]
        one = await client.get(
            "/v1/suppressions", params={"address": "U1@example.com"}, headers=writer
        )
        assert [s["address"] for s in one.json()["items"]] == ["u1@example.com"]
        since = first["items"][1]["created_at"]
        newer = await client.get("/v1/suppressions", params={"since": since}, headers=writer)
        assert [s["address"] for s in newer.json()["items"]] == addresses[1:]

    async def test_admin_deletes_a_suppression_and_sending_resumes(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        admin: dict[str, str],
    ) -> None:
        await hook(client, "counting", {"type": "complained", "address": "alice@example.com"})
        [row] = (await client.get("/v1/suppressions", headers=writer)).json()["items"]
        assert (
            await client.delete(f"/v1/suppressions/{row['id']}", headers=writer)
        ).status_code == 403
        assert (
            await client.delete(f"/v1/suppressions/{row['id']}", headers=admin)
        ).status_code == 204
        assert (
            await client.delete(f"/v1/suppressions/{row['id']}", headers=admin)
        ).status_code == 404
        assert (await send(client, writer, "k1", email()))["outcome"] == "accepted"
