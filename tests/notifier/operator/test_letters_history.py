from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from notifier.models import AttemptOutcome, LetterOrigin, LetterStatus

from tests.notifier.operator.conftest import T0, InsertLetters, letter_row

STATUSES = [LetterStatus.sent, LetterStatus.failed, LetterStatus.scheduled, LetterStatus.cancelled]


async def all_pages(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/letters", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


class TestHistory:
    @pytest.fixture
    async def many(self, insert_letters: InsertLetters) -> list[int]:
        # 3,000 rows; every 7th shares a created_at with its neighbour (ties broken by id)
        rows = [
            letter_row(
                i,
                letter="LowBalanceNotice" if i % 3 else "LimitIsOverNotice",
                status=STATUSES[i % 4],
                created_at=T0 + timedelta(seconds=i - (i % 7 == 0)),
                send_at=T0 + timedelta(hours=i % 48),
                sent_at=T0 + timedelta(hours=i % 48) if i % 4 == 0 else None,
            )
            for i in range(3000)
        ]
        return await insert_letters(*rows)

    async def test_pages_cover_every_row_once_newest_first(
        self, client: httpx.AsyncClient, reader: dict[str, str], many: list[int]
    ) -> None:
        ids = await all_pages(client, reader, limit=500)
        assert sorted(ids) == sorted(many)
        assert len(ids) == len(set(ids))
        r = await client.get("/v1/letters", params={"limit": 5}, headers=reader)
        created = [item["created_at"] for item in r.json()["items"]]
        assert created == sorted(created, reverse=True)

    async def test_filters_combine(
        self, client: httpx.AsyncClient, reader: dict[str, str], many: list[int]
    ) -> None:
        ids = await all_pages(
            client,
            reader,
            client_id="client-3",
            letter="LowBalanceNotice",
            status=["failed", "cancelled"],
            limit=37,
        )
        expected = [
            many[i]
            for i in range(3000)
            if i % 10 == 3
            and i % 3
            and STATUSES[i % 4] in (LetterStatus.failed, LetterStatus.cancelled)
        ]
        assert sorted(ids) == sorted(expected)

    async def test_time_ranges_are_half_open(
        self, client: httpx.AsyncClient, reader: dict[str, str], many: list[int]
    ) -> None:
        params = {
            "send_from": (T0 + timedelta(hours=10)).isoformat(),
            "send_to": (T0 + timedelta(hours=12)).isoformat(),
            "sent_from": T0.isoformat(),
        }
        ids = await all_pages(client, reader, limit=500, **params)
        expected = [many[i] for i in range(3000) if i % 48 in (10, 11) and i % 4 == 0]
        assert sorted(ids) == sorted(expected)

    async def test_naive_datetime_and_bad_cursor_are_422(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.get(
            "/v1/letters", params={"created_from": "2026-11-20T00:00:00"}, headers=reader
        )
        assert r.status_code == 422
        r = await client.get("/v1/letters", params={"cursor": "nope"}, headers=reader)
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"

    async def test_event_filter(
        self, client: httpx.AsyncClient, reader: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        event_id = uuid.uuid4()
        [mine, _] = await insert_letters(letter_row(1, event_id=event_id), letter_row(2))
        r = await client.get("/v1/letters", params={"event_id": str(event_id)}, headers=reader)
        assert [i["id"] for i in r.json()["items"]] == [mine]


class TestTimeline:
    async def test_sent_letter_shows_event_decision_attempts_and_provider(
        self,
        client: httpx.AsyncClient,
        reader: dict[str, str],
        insert_letters: InsertLetters,
        insert_event: Any,
        insert_attempts: Any,
    ) -> None:
        event_id = await insert_event("contract.created", occurred_at=T0)
        # +1 day from 12:00 UTC = 15:00 Moscow: no quiet-hour shift
        [letter_id] = await insert_letters(
            letter_row(
                0,
                letter="FirstRemindPrepaidNotice",
                event_id=event_id,
                triggered_at=T0,
                created_at=T0 + timedelta(seconds=1),
                send_at=T0 + timedelta(days=1),
                sent_at=T0 + timedelta(days=1, seconds=5),
                provider_message_id="msg-1",
                attempts=2,
            )
        )
        await insert_attempts(
            {
                "letter_id": letter_id,
                "try_number": 1,
                "outcome": AttemptOutcome.transient,
                "status_code": 503,
                "error": "gateway unavailable",
            },
            {
                "letter_id": letter_id,
                "try_number": 2,
                "outcome": AttemptOutcome.ok,
                "status_code": 202,
                "provider_message_id": "msg-1",
            },
        )
        r = await client.get(f"/v1/letters/{letter_id}", headers=reader)
        assert r.status_code == 200, r.text
        body = r.json()
        kinds = [e["kind"] for e in body["timeline"]]
        assert kinds == ["event", "decision", "attempt", "attempt", "provider", "sent"]
        assert body["event"]["type"] == "contract.created"
        decision = body["timeline"][1]["detail"]
        assert decision["quiet_hours_shift"] is False
        assert decision["timing"] == "1 day, 0:00:00 after the event"
        assert "503" in body["timeline"][2]["summary"]
        assert [a["outcome"] for a in body["attempt_rows"]] == ["transient", "ok"]

    async def test_quiet_hours_shift_is_shown(
        self, client: httpx.AsyncClient, reader: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        # triggered 20:00 Moscow (17:00 UTC) +1 day -> 20:00 next day is before 21:00: no shift;
        # triggered 22:00 Moscow (19:00 UTC) +1 day -> moved to 09:00 the day after.
        late = T0.replace(hour=19)
        [letter_id] = await insert_letters(
            letter_row(
                0,
                letter="FirstRemindPrepaidNotice",
                triggered_at=late,
                created_at=late,
                send_at=T0.replace(hour=6) + timedelta(days=2),
                status=LetterStatus.scheduled,
            )
        )
        body = (await client.get(f"/v1/letters/{letter_id}", headers=reader)).json()
        decision = next(e for e in body["timeline"] if e["kind"] == "decision")
        assert decision["detail"]["quiet_hours_shift"] is True
        assert decision["detail"]["scheduled_for"] == "2026-11-22T06:00:00+00:00"
        assert "quiet hours" in decision["summary"]

    async def test_cancelled_and_skipped_reasons(
        self, client: httpx.AsyncClient, reader: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        cause = uuid.uuid4()
        cancelled, skipped = await insert_letters(
            letter_row(
                0,
                status=LetterStatus.cancelled,
                cancel_reason="client.payment_received",
                cancelled_by_event_id=cause,
            ),
            letter_row(1, status=LetterStatus.skipped, skip_reason="address suppressed"),
        )
        body = (await client.get(f"/v1/letters/{cancelled}", headers=reader)).json()
        last = body["timeline"][-1]
        assert last["kind"] == "cancelled"
        assert last["detail"] == {"reason": "client.payment_received", "event_id": str(cause)}
        body = (await client.get(f"/v1/letters/{skipped}", headers=reader)).json()
        assert body["timeline"][-1]["summary"] == "skipped: address suppressed"

    async def test_manual_letter_and_resends(
        self, client: httpx.AsyncClient, reader: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        [original] = await insert_letters(letter_row(0))
        [copy] = await insert_letters(
            letter_row(1, origin=LetterOrigin.resend, resend_of=original, created_by="ops-alice")
        )
        body = (await client.get(f"/v1/letters/{original}", headers=reader)).json()
        assert body["resends"] == [copy]
        assert body["timeline"][-1]["kind"] == "resent"
        body = (await client.get(f"/v1/letters/{copy}", headers=reader)).json()
        assert body["timeline"][0]["summary"] == f"resend of letter {original} by ops-alice"

    async def test_unknown_letter_is_404(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.get("/v1/letters/999999", headers=reader)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
