from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from notifier.models import Base, LetterStatus
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import Upstream
from tests.notifier.operator.conftest import InsertLetters, letter_row


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    data = Upstream()
    data.add_client("client-1", locale="ru")
    data.add_contract("ct-1", "client-1")
    with respx.mock(assert_all_called=False) as router:
        data.install(router)
        yield data


async def table_counts(sm: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sm() as s:
        return {
            name: int((await s.execute(select(func.count()).select_from(table))).scalar_one())
            for name, table in Base.metadata.tables.items()
        }


async def redis_keys(url: str) -> list[bytes]:
    client = Redis.from_url(url)
    try:
        return sorted(await client.keys("*"))
    finally:
        await client.aclose()


class TestDryRun:
    async def test_has_no_side_effects(
        self,
        client: httpx.AsyncClient,
        reader: dict[str, str],
        upstream: Upstream,
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis_url: str,
    ) -> None:
        await insert_letters(
            letter_row(
                0,
                letter="FirstRemindPrepaidNotice",
                client_id="client-1",
                status=LetterStatus.scheduled,
            )
        )
        before = await table_counts(sessionmaker)
        keys = await redis_keys(redis_url)
        for body in (
            event_body("client.balance_changed"),
            event_body("contract.created"),
            event_body("client.payment_received"),
        ):
            r = await client.post("/v1/events:dry-run", json=body, headers=reader)
            assert r.status_code == 200, r.text
        assert await table_counts(sessionmaker) == before
        assert await redis_keys(redis_url) == keys

    async def test_immediate_letters_with_rendered_previews(
        self, client: httpx.AsyncClient, reader: dict[str, str], upstream: Upstream
    ) -> None:
        r = await client.post("/v1/events:dry-run", json=event_body(), headers=reader)
        body = r.json()
        by_letter = {p["letter"]: p for p in body["would_schedule"]}
        low = by_letter["LowBalanceNotice"]
        assert low["action"] == "send_now"
        assert low["recipient"] == "boss@client-1.example"
        assert low["preview"]["subject"]
        assert low["conditions"][0]["passed"] is True
        # 50 is above the limit 0: LimitIsOverNotice is skipped with its reason
        limit = by_letter["LimitIsOverNotice"]
        assert limit["action"] == "skip"
        assert limit["conditions"][0]["passed"] is False
        assert limit["reason"] == "balance above the level"

    async def test_scheduled_reminders_show_quiet_hour_shift(
        self, client: httpx.AsyncClient, reader: dict[str, str], upstream: Upstream
    ) -> None:
        # 19:30 UTC = 22:30 Moscow; +1 day is inside quiet hours -> 09:00 Moscow = 06:00 UTC
        at = datetime.now(UTC).replace(hour=19, minute=30, second=0, microsecond=0)
        r = await client.post(
            "/v1/events:dry-run",
            json=event_body("contract.created", occurred_at=at),
            headers=reader,
        )
        first = next(
            p for p in r.json()["would_schedule"] if p["letter"] == "FirstRemindPrepaidNotice"
        )
        assert first["action"] == "schedule"
        assert first["quiet_hours_shift"] is True
        expected = (at + timedelta(days=2)).replace(hour=6, minute=0)
        assert datetime.fromisoformat(first["send_at"]) == expected

    async def test_cancelling_event_lists_pending_letters(
        self,
        client: httpx.AsyncClient,
        reader: dict[str, str],
        upstream: Upstream,
        insert_letters: InsertLetters,
    ) -> None:
        [pending, _sent] = await insert_letters(
            letter_row(
                0,
                letter="FirstRemindPrepaidNotice",
                client_id="client-1",
                status=LetterStatus.scheduled,
            ),
            letter_row(
                1, letter="FirstRemindPrepaidNotice", client_id="client-1", status=LetterStatus.sent
            ),
        )
        r = await client.post(
            "/v1/events:dry-run", json=event_body("client.payment_received"), headers=reader
        )
        assert [c["id"] for c in r.json()["would_cancel"]] == [pending]

    async def test_invalid_event_is_422_with_field_errors(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.post(
            "/v1/events:dry-run", json=event_body(payload={"old_balance": "x"}), headers=reader
        )
        assert r.status_code == 422
        assert {e["loc"] for e in r.json()["errors"]} == {
            "payload.old_balance",
            "payload.new_balance",
        }


class TestPreview:
    async def test_renders_for_a_client_in_the_requested_locale(
        self, client: httpx.AsyncClient, reader: dict[str, str], upstream: Upstream
    ) -> None:
        r = await client.post(
            "/v1/templates/LowBalanceNotice:preview",
            json={
                "client_id": "client-1",
                "locale": "en",
                "context_overrides": {"client": {"name": "Globex"}},
            },
            headers=reader,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["locale"] == "en"
        assert "Globex" in body["html"]
        assert "Globex" in body["text"]

    async def test_missing_context_is_422_with_the_render_message(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.post("/v1/templates/LowBalanceNotice:preview", json={}, headers=reader)
        assert r.status_code == 422
        assert "missing variable" in r.json()["detail"]

    async def test_unknown_letter_is_404(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.post("/v1/templates/Nope:preview", json={}, headers=reader)
        assert r.status_code == 404


class TestTheReadmeExample:
    """The event README.md and ``make run``'s banner show produces a letter against the stub
    ``make run`` starts (it named a client whose balance crossed nothing: no letter at all)."""

    async def test_the_example_event_sends_a_low_balance_letter_at_once(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        import json
        from pathlib import Path

        from deploy.run_local import EXAMPLE_CLIENT, EXAMPLE_PAYLOAD, curl_example
        from deploy.upstream_stub import app as stub

        body = json.loads(curl_example("127.0.0.1", 8000, "t").split("-d '", 1)[1].rstrip("'"))
        assert (body["client_id"], body["payload"]) == (EXAMPLE_CLIENT, EXAMPLE_PAYLOAD)
        readme = Path(__file__).parents[3].joinpath("README.md").read_text()
        assert f'"client_id": "{EXAMPLE_CLIENT}"' in readme
        assert json.dumps(EXAMPLE_PAYLOAD) in readme
        with respx.mock(assert_all_called=False) as router:
            router.route(host="upstream.test").mock(side_effect=respx.ASGIHandler(stub))
            r = await client.post("/v1/events:dry-run", json=body, headers=reader)
        assert r.status_code == 200, r.text
        planned = {p["letter"]: p for p in r.json()["would_schedule"]}
        assert planned["LowBalanceNotice"]["action"] == "send_now", planned["LowBalanceNotice"]

    async def test_the_integration_example_would_sync_the_crm_and_subscribe(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        """README's second example (seeds 000-001): each event dry-runs to its letter."""
        import json
        import re
        from pathlib import Path

        readme = Path(__file__).parents[3].joinpath("README.md").read_text()
        found = re.search(r"""-d '(\{"events": \[.*?\]\})'""", readme, re.S)
        assert found is not None
        events = json.loads(found.group(1))["events"]
        expected = {
            "user.signed_up": ("CrmContactSync", "upsert_contact"),
            "user.group_joined": ("NewsletterGroupSubscribe", "subscribe"),
        }
        assert {e["type"] for e in events} == set(expected)
        for body in events:
            r = await client.post("/v1/events:dry-run", json=body, headers=reader)
            assert r.status_code == 200, r.text
            letter, action = expected[body["type"]]
            planned = {p["letter"]: p for p in r.json()["would_schedule"]}
            assert planned[letter]["action"] == "send_now", planned[letter]
            assert planned[letter]["message"]["action"] == action
