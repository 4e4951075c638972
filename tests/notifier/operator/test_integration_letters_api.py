"""The integration letters (seeds 000-002) through the operator HTTP API: manual sends built from
an event payload, the admin bypass, preview and dry run (no templates: the gateway message is
shown instead), and resends that keep the stored message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from notifier.models import Letter, LetterOrigin, LetterStatus
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import Upstream

USER = "user-7"
SUBSCRIBE = "NewsletterGroupSubscribe"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """Upstream answers (and counts) every call; the newsletter letters need none."""
    data = Upstream()
    data.add_client("client-1", locale="ru")
    with respx.mock(assert_all_called=False) as router:
        data.install(router)
        yield data


async def letters_of(sm: async_sessionmaker[AsyncSession], **where: object) -> list[Letter]:
    async with sm() as s:
        stmt = select(Letter).filter_by(**where).order_by(Letter.id)
        return list((await s.execute(stmt)).scalars())


def send_body(**extra: Any) -> dict[str, Any]:
    return {"letter": SUBSCRIBE, "client_id": USER, **extra}


def error_locs(response: httpx.Response) -> list[str]:
    return [e["loc"] for e in response.json().get("errors", [])]


async def send(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> httpx.Response:
    return await client.post("/v1/letters:send", json=send_body(**extra), headers=headers)


class TestManualSend:
    async def test_without_event_payload_is_422_naming_it(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await send(client, writer)
        assert r.status_code == 422, r.text
        assert "body.event_payload" in error_locs(r)
        assert await letters_of(sessionmaker) == []

    async def test_with_event_payload_creates_the_newsletter_letter_with_its_message(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await send(client, writer, event_payload={"email": "x@example.com", "group": "nda"})
        assert r.status_code == 201, r.text
        [out] = r.json()["letters"]
        assert (out["letter"], out["channel"], out["recipient"]) == (
            SUBSCRIBE,
            "newsletter",
            "x@example.com",
        )
        assert r.json()["condition"]["passed"] is True
        [row] = await letters_of(sessionmaker)
        assert (row.channel, row.recipient, row.origin, row.status) == (
            "newsletter",
            "x@example.com",
            LetterOrigin.manual,
            LetterStatus.scheduled,
        )
        message = row.context["message"]
        assert message["action"] == "subscribe"
        assert message["to"] == [{"address": "x@example.com"}]
        assert message["lists"] == ["mozillians-nda"]
        assert row.context["event"]["payload"] == {"email": "x@example.com", "group": "nda"}
        assert row.context["operator"] == {"by": "ops-alice", "bypass_conditions": False}
        assert upstream.calls == 0  # the payload carries all the letter needs

    async def test_invalid_event_payload_is_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await send(client, writer, event_payload={"email": "not-an-email", "group": "nda"})
        assert r.status_code == 422, r.text
        assert "body.event_payload.email" in error_locs(r)
        assert await letters_of(sessionmaker) == []

    async def test_group_without_newsletters_is_409_unless_the_admin_bypasses_it(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        payload = {"email": "x@example.com", "group": "chess"}
        r = await send(client, writer, event_payload=payload)
        assert r.status_code == 409, r.text
        assert "condition not met" in r.json()["detail"]
        assert "chess" in r.json()["detail"]
        assert await letters_of(sessionmaker) == []

        r = await send(
            client,
            writer,
            event_payload=payload,
            bypass_conditions=True,
            context_overrides={"message": {"lists": ["chess-news"]}},
        )
        assert r.status_code == 201, r.text
        assert r.json()["condition"]["bypassed"] is True
        assert r.json()["condition"]["passed"] is False
        [row] = await letters_of(sessionmaker)
        message = row.context["message"]
        assert message["lists"] == ["chess-news"]
        assert message["action"] == "subscribe"  # the rest of the message is kept
        assert message["to"] == [{"address": "x@example.com"}]
        assert row.context["operator"]["bypass_conditions"] is True


class TestPreviewAndDryRun:
    @pytest.mark.parametrize("body", [{}, {"client_id": USER}])
    async def test_preview_of_an_integration_letter_is_422_no_templates(
        self,
        body: dict[str, Any],
        client: httpx.AsyncClient,
        reader: dict[str, str],
        upstream: Upstream,
    ) -> None:
        r = await client.post(f"/v1/templates/{SUBSCRIBE}:preview", json=body, headers=reader)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "no templates" in detail
        # refused as an integration letter, not a failed render of missing templates
        assert "integration letter" in detail
        assert not detail.startswith("render error")

    async def test_dry_run_shows_the_gateway_message_instead_of_a_preview(
        self,
        client: httpx.AsyncClient,
        reader: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        event = event_body(
            "user.group_joined",
            client_id=USER,
            payload={"email": "x@example.com", "group": "nda"},
            occurred_at=datetime.now(UTC),
        )
        r = await client.post("/v1/events:dry-run", json=event, headers=reader)
        assert r.status_code == 200, r.text
        [planned] = [p for p in r.json()["would_schedule"] if p["letter"] == SUBSCRIBE]
        assert planned["action"] in ("schedule", "send_now")
        assert (planned["channel"], planned["recipient"]) == ("newsletter", "x@example.com")
        assert planned["message"]["action"] == "subscribe"
        assert planned["message"]["lists"] == ["mozillians-nda"]
        assert planned["message"]["to"] == [{"address": "x@example.com"}]
        assert planned["preview"] is None
        assert planned["render_error"] is None
        assert await letters_of(sessionmaker) == []  # nothing stored


class TestResend:
    async def sent_letter(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Letter:
        """A NewsletterGroupSubscribe sent by hand (the manual send, then marked sent)."""
        r = await send(client, writer, event_payload={"email": "x@example.com", "group": "nda"})
        assert r.status_code == 201, r.text
        [out] = r.json()["letters"]
        async with sessionmaker() as s, s.begin():
            await s.execute(
                update(Letter)
                .where(Letter.id == out["id"])
                .values(status=LetterStatus.sent, sent_at=datetime.now(UTC), attempts=1)
            )
        [letter] = await letters_of(sessionmaker, id=out["id"])
        return letter

    async def test_fresh_resend_is_422(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        original = await self.sent_letter(client, writer, sessionmaker)
        r = await client.post(
            f"/v1/letters/{original.id}:resend", json={"fresh": True}, headers=writer
        )
        assert r.status_code == 422, r.text
        assert "integration letter" in r.json()["detail"]
        assert [x.id for x in await letters_of(sessionmaker)] == [original.id]

    async def test_resend_keeps_the_stored_message(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        original = await self.sent_letter(client, writer, sessionmaker)
        r = await client.post(f"/v1/letters/{original.id}:resend", headers=writer)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["status"], body["origin"], body["resend_of"]) == (
            "scheduled",
            "resend",
            original.id,
        )
        assert (body["channel"], body["recipient"]) == ("newsletter", "x@example.com")
        [copy] = await letters_of(sessionmaker, resend_of=original.id)
        assert copy.context["message"] == original.context["message"]
        assert copy.context["message"]["lists"] == ["mozillians-nda"]
        assert copy.context["operator"]["resend_of"] == original.id
        assert upstream.calls == 0
