from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from notifier.models import Letter, LetterStatus
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.notifier.operator.conftest import T0, InsertLetters, letter_row


async def status_of(sm: async_sessionmaker[AsyncSession], letter_id: int) -> Letter:
    async with sm() as s:
        return (await s.execute(select(Letter).where(Letter.id == letter_id))).scalar_one()


class TestCancel:
    async def test_scheduled_letter_is_cancelled_with_the_operator_name(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [letter_id] = await insert_letters(letter_row(0, status=LetterStatus.scheduled))
        r = await client.post(
            f"/v1/letters/{letter_id}:cancel", json={"reason": "client asked"}, headers=writer
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        row = await status_of(sessionmaker, letter_id)
        assert row.status == LetterStatus.cancelled
        assert row.cancel_reason == "client asked (ops-alice)"

    async def test_without_body_uses_a_default_reason(
        self, client: httpx.AsyncClient, writer: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        [letter_id] = await insert_letters(letter_row(0, status=LetterStatus.scheduled))
        r = await client.post(f"/v1/letters/{letter_id}:cancel", headers=writer)
        assert r.json()["cancel_reason"] == "cancelled by operator (ops-alice)"

    @pytest.mark.parametrize(
        "status",
        [s for s in LetterStatus if s != LetterStatus.scheduled],
    )
    async def test_any_other_state_is_409_and_unchanged(
        self,
        status: LetterStatus,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [letter_id] = await insert_letters(letter_row(0, status=status))
        r = await client.post(f"/v1/letters/{letter_id}:cancel", headers=writer)
        assert r.status_code == 409
        assert status.value in r.json()["detail"]
        assert (await status_of(sessionmaker, letter_id)).status == status

    async def test_unknown_letter_is_404(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/letters/424242:cancel", headers=writer)
        assert r.status_code == 404

    async def test_reader_cannot_cancel(
        self, client: httpx.AsyncClient, reader: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        [letter_id] = await insert_letters(letter_row(0, status=LetterStatus.scheduled))
        r = await client.post(f"/v1/letters/{letter_id}:cancel", headers=reader)
        assert r.status_code == 403


class TestBulkRetry:
    @pytest.fixture
    async def failed(self, insert_letters: InsertLetters) -> list[int]:
        rows = [
            letter_row(i, status=LetterStatus.failed, attempts=5, last_error="boom")
            for i in range(30)
        ]
        rows += [letter_row(100 + i, status=LetterStatus.sent) for i in range(5)]
        return (await insert_letters(*rows))[:30]

    async def test_dry_run_counts_without_changing_anything(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        failed: list[int],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await client.post(
            "/v1/letters:retry",
            json={"filter": {"status": ["failed"]}, "dry_run": True},
            headers=writer,
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"matched": 30, "rescheduled": 0, "dry_run": True, "letter_ids": []}
        assert (await status_of(sessionmaker, failed[0])).status == LetterStatus.failed

    async def test_without_max_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str], failed: list[int]
    ) -> None:
        r = await client.post("/v1/letters:retry", json={"filter": {}}, headers=writer)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == "body.max"

    async def test_more_matches_than_max_is_409(
        self, client: httpx.AsyncClient, writer: dict[str, str], failed: list[int]
    ) -> None:
        r = await client.post("/v1/letters:retry", json={"max": 10}, headers=writer)
        assert r.status_code == 409
        assert "30 letters match" in r.json()["detail"]

    async def test_retry_reschedules_matching_failed_letters(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        failed: list[int],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = {"filter": {"client_id": "client-3", "created_from": T0.isoformat()}, "max": 10}
        r = await client.post("/v1/letters:retry", json=body, headers=writer)
        assert r.status_code == 200, r.text
        expected = [failed[i] for i in range(30) if i % 10 == 3]
        assert r.json()["letter_ids"] == expected
        row = await status_of(sessionmaker, expected[0])
        assert (row.status, row.attempts) == (LetterStatus.scheduled, 0)
        assert row.send_at > T0 + timedelta(days=1)
        assert (await status_of(sessionmaker, failed[0])).status == LetterStatus.failed

    async def test_only_failed_or_expired_can_be_retried(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post(
            "/v1/letters:retry", json={"filter": {"status": ["sent"]}, "max": 5}, headers=writer
        )
        assert r.status_code == 422
