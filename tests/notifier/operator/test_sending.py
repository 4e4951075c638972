from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx
from notifier.models import Letter, LetterOrigin, LetterStatus
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.notifier.letters.conftest import Upstream
from tests.notifier.operator.conftest import InsertLetters, letter_row


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    data = Upstream()
    data.add_client("client-1", locale="ru", emails=["a@client-1.example", "b@client-1.example"])
    data.add_contract("ct-1", "client-1")
    with respx.mock(assert_all_called=False) as router:
        data.install(router)
        yield data


async def letters_of(sm: async_sessionmaker[AsyncSession], **where: object) -> list[Letter]:
    async with sm() as s:
        stmt = select(Letter).filter_by(**where).order_by(Letter.id)
        return list((await s.execute(stmt)).scalars())


def snapshot(client_id: str = "client-1") -> dict[str, object]:
    return {
        "client": {
            "id": client_id,
            "name": "ACME",
            "locale": "en",
            "timezone": "Europe/Moscow",
            "emails": ["x@example.com"],
            "payment_type": "prepaid",
            "service": "taxi",
            "cabinet_url": "https://corp.example/c",
        },
        "event": {
            "id": "e",
            "type": "client.balance_changed",
            "occurred_at": "2026-11-20T12:00:00+00:00",
            "payload": {},
        },
        "params": {},
        "links": {
            "cabinet_url": "https://corp.example/c",
            "payment_url": "https://corp.example/c/payment",
            "unsubscribe_url": None,
        },
        "letter": {"name": "LowBalanceNotice", "id": None},
        "balance": {
            "client_id": client_id,
            "contract_id": "ct-1",
            "amount": "50.00",
            "currency": "RUB",
            "threshold": "100.00",
            "limit": "0.00",
        },
    }


class TestResend:
    @pytest.mark.parametrize(
        "status",
        [
            LetterStatus.sent,
            LetterStatus.failed,
            LetterStatus.cancelled,
            LetterStatus.skipped,
            LetterStatus.expired,
        ],
    )
    async def test_finished_letter_is_resent_from_its_snapshot(
        self,
        status: LetterStatus,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [original] = await insert_letters(letter_row(1, status=status, context=snapshot()))
        r = await client.post(f"/v1/letters/{original}:resend", headers=writer)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["status"], body["origin"], body["resend_of"]) == (
            "scheduled",
            "resend",
            original,
        )
        assert body["created_by"] == "ops-alice"
        [copy] = await letters_of(sessionmaker, resend_of=original)
        assert copy.recipient == "finance1@example.com"
        assert copy.context["balance"]["amount"] == "50.00"
        assert copy.event_id is None

    @pytest.mark.parametrize("status", [LetterStatus.scheduled, LetterStatus.sending])
    async def test_pending_letter_is_409(
        self,
        status: LetterStatus,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
    ) -> None:
        [original] = await insert_letters(letter_row(1, status=status, context=snapshot()))
        r = await client.post(f"/v1/letters/{original}:resend", headers=writer)
        assert r.status_code == 409

    async def test_fresh_resend_fetches_upstream_again(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [original] = await insert_letters(letter_row(1, client_id="client-1", context=snapshot()))
        upstream.balances["client-1"]["amount"] = "7.00"
        r = await client.post(
            f"/v1/letters/{original}:resend", json={"fresh": True}, headers=writer
        )
        assert r.status_code == 201, r.text
        [copy] = await letters_of(sessionmaker, resend_of=original)
        assert copy.context["balance"]["amount"] == "7.00"
        assert copy.context["event"]["type"] == "client.balance_changed"  # what triggered it

    async def test_broken_snapshot_is_422_with_the_render_error(
        self, client: httpx.AsyncClient, writer: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        [original] = await insert_letters(letter_row(1, context={"client": {}}))
        r = await client.post(f"/v1/letters/{original}:resend", headers=writer)
        assert r.status_code == 422
        assert "render error" in r.json()["detail"]

    @pytest.mark.parametrize("fresh", [False, True])
    async def test_switched_off_letter_is_409_like_a_manual_send_and_creates_nothing(
        self,
        fresh: bool,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        configurer: dict[str, str],
        insert_letters: InsertLetters,
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [original] = await insert_letters(
            letter_row(1, letter="FinancialUnblockNotice", client_id="client-1", context=snapshot())
        )
        r = await client.patch(
            "/v1/config/letters/FinancialUnblockNotice", json={"enabled": False}, headers=configurer
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            f"/v1/letters/{original}:resend", json={"fresh": fresh}, headers=writer
        )
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["title"], r.json()["detail"]) == (
            "Conflict",
            "letter FinancialUnblockNotice is switched off; enable it first",
        )
        assert [x.id for x in await letters_of(sessionmaker)] == [original]
        assert upstream.calls == 0  # refused before any upstream fetch
        manual = await client.post(
            "/v1/letters:send",
            json={"letter": "FinancialUnblockNotice", "client_id": "client-1"},
            headers=writer,
        )
        assert (manual.status_code, manual.json()["detail"]) == (409, r.json()["detail"])

    async def test_letter_switched_on_again_is_resent(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        configurer: dict[str, str],
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [original] = await insert_letters(
            letter_row(1, letter="FinancialUnblockNotice", context=snapshot())
        )
        url = "/v1/config/letters/FinancialUnblockNotice"
        await client.patch(url, json={"enabled": False}, headers=configurer)
        await client.patch(url, json={"enabled": True}, headers=configurer)
        r = await client.post(f"/v1/letters/{original}:resend", json={}, headers=writer)
        assert r.status_code == 201, r.text
        assert (r.json()["status"], r.json()["resend_of"]) == ("scheduled", original)
        [copy] = await letters_of(sessionmaker, resend_of=original)
        assert copy.letter == "FinancialUnblockNotice"


class TestManualSend:
    async def test_catalog_letter_is_created_per_recipient_as_manual(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await client.post(
            "/v1/letters:send",
            json={"letter": "LowBalanceNotice", "client_id": "client-1"},
            headers=writer,
        )
        assert r.status_code == 201, r.text
        assert r.json()["condition"]["passed"] is True
        rows = await letters_of(sessionmaker, origin=LetterOrigin.manual)
        assert [(x.recipient, x.created_by, x.status) for x in rows] == [
            ("a@client-1.example", "ops-alice", LetterStatus.scheduled),
            ("b@client-1.example", "ops-alice", LetterStatus.scheduled),
        ]
        assert rows[0].locale == "ru"

    async def test_unknown_letter_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post(
            "/v1/letters:send", json={"letter": "Nope", "client_id": "client-1"}, headers=writer
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == "body.letter"

    async def test_failed_condition_is_409_unless_bypassed(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        upstream.balances["client-1"]["amount"] = "5000.00"
        body = {"letter": "LowBalanceNotice", "client_id": "client-1"}
        r = await client.post("/v1/letters:send", json=body, headers=writer)
        assert r.status_code == 409
        assert "not below" in r.json()["detail"]
        assert await letters_of(sessionmaker) == []
        r = await client.post(
            "/v1/letters:send", json={**body, "bypass_conditions": True}, headers=writer
        )
        assert r.status_code == 201, r.text
        assert r.json()["condition"] == {
            "name": "LowBalanceNotice.condition",
            "passed": False,
            "reason": "balance 5000.00 is not below the level 100.00",
            "bypassed": True,
        }
        rows = await letters_of(sessionmaker)
        assert rows[0].context["operator"] == {"by": "ops-alice", "bypass_conditions": True}

    async def test_switched_off_letter_is_409(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        configurer: dict[str, str],
        upstream: Upstream,
    ) -> None:
        await client.patch(
            "/v1/config/letters/LowBalanceNotice", json={"enabled": False}, headers=configurer
        )
        r = await client.post(
            "/v1/letters:send",
            json={"letter": "LowBalanceNotice", "client_id": "client-1", "bypass_conditions": True},
            headers=writer,
        )
        assert r.status_code == 409

    async def test_unknown_client_upstream_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str], upstream: Upstream
    ) -> None:
        r = await client.post(
            "/v1/letters:send",
            json={"letter": "FinancialUnblockNotice", "client_id": "ghost"},
            headers=writer,
        )
        assert r.status_code == 422
