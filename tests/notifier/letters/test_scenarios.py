"""Event in -> row with the right send_at -> clock moved -> drain -> the gateway got the letter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from notifier.letters.drain import render_context
from notifier.letters.rendering import render
from notifier.letters.repository import Claimed
from notifier.models import Letter, LetterStatus
from sqlalchemy import cast, update
from sqlalchemy.dialects.postgresql import JSONB

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC)


ACTIVATED_PREPAID = {"payment_type": "prepaid", "service": "taxi"}
ACTIVATED_POSTPAID = {"payment_type": "postpaid", "service": "taxi"}
CONTRACT = {"contract_id": "ct-1", "payment_type": "prepaid", "is_paid": False}

# letter, event type, payload, due (UTC; the client is in Moscow, UTC+3; START = 13:00 local)
SCENARIOS: list[tuple[str, str, dict[str, Any], datetime]] = [
    ("FirstRemindPrepaidNotice", "contract.created", CONTRACT, at(2, 10)),
    ("SecondRemindPrepaidNotice", "contract.created", CONTRACT, at(4, 10)),
    ("ThirdRemindPrepaidNotice", "contract.created", CONTRACT, at(8, 10)),
    ("ThirdRemindOfferNotice", "client.created_by_offer", {}, at(8, 10)),
    ("PrepaidFirstTakeARideNotice", "client.activated", ACTIVATED_PREPAID, at(4, 8)),
    ("PrepaidSecondTakeARideNotice", "client.activated", ACTIVATED_PREPAID, at(11, 8)),
    ("PostpaidFirstTakeARideNotice", "client.activated", ACTIVATED_POSTPAID, at(4, 8)),
    ("PostpaidSecondTakeARideNotice", "client.activated", ACTIVATED_POSTPAID, at(11, 8)),
    ("ActivateClientNotice", "client.activated", ACTIVATED_PREPAID, START),
    (
        "CargoActivateClientNotice",
        "client.activated",
        {"payment_type": "postpaid", "service": "cargo"},
        START,
    ),
    (
        "LimitIsOverNotice",
        "client.balance_changed",
        {"old_balance": "120.00", "new_balance": "-5.00"},
        START,
    ),
    ("FinancialUnblockNotice", "client.unblocked", {}, START),
    (
        "LowBalanceNotice",
        "client.balance_changed",
        {"old_balance": "150.00", "new_balance": "50.00"},
        START,
    ),
]


def expected_render(letter: Any, engine: Engine) -> Any:
    claimed = Claimed(
        id=letter.id,
        letter=letter.letter,
        client_id=letter.client_id,
        contract_id=letter.contract_id,
        channel=letter.channel,
        recipient=letter.recipient,
        locale=letter.locale,
        context=letter.context,
        attempts=0,
        send_at=letter.send_at,
        expires_at=letter.expires_at,
    )
    return render(letter.letter, letter.locale, render_context(claimed, engine.sender.config))


class TestEveryLetter:
    @pytest.mark.parametrize(
        ("name", "type_", "payload", "due"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
    )
    async def test_event_schedules_and_the_drain_sends_the_rendered_letter(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        name: str,
        type_: str,
        payload: dict[str, Any],
        due: datetime,
    ) -> None:
        body = event_body(type_, payload=payload, occurred_at=START)
        assert await letter_engine.handle(body) == "processed"
        [letter] = await letter_engine.letters(letter=name)
        assert letter.send_at == due
        assert letter.recipient == "boss@client-1.example"
        assert letter.event_id == uuid.UUID(body["id"])
        assert set(letter.context) >= {"client", "event", "params", "links", "letter"}

        if due > START:  # scheduled: nothing goes out before it is due
            await letter_engine.sender.drain(now=START)
            assert gateway.sent_for(name) == []
            letter_engine.clock.set(due - timedelta(seconds=1))
            await letter_engine.sender.drain(now=letter_engine.clock())
            assert gateway.sent_for(name) == []
            letter_engine.clock.set(due)
            await letter_engine.sender.drain(now=due)

        [item] = gateway.sent_for(name)
        [letter] = await letter_engine.letters(letter=name)
        assert letter.status == LetterStatus.sent
        assert letter.sent_at == due
        assert letter.provider_message_id == f"pm-letter-{letter.id}"
        message = item["message"]
        assert item["idempotency_key"] == f"letter-{letter.id}"
        assert message["to"] == [{"address": "boss@client-1.example", "name": "ACME client-1"}]
        assert message["metadata"] == {
            "letter_id": letter.id,
            "letter": name,
            "client_id": "client-1",
        }
        expected = expected_render(letter, letter_engine)
        assert (message["subject"], message["html"], message["text"]) == (
            expected.subject,
            expected.html,
            expected.text,
        )
        assert message["unsubscribe_url"].startswith(
            f"http://127.0.0.1:8000/v1/unsubscribe/{letter.id}."
        )
        [attempt] = await letter_engine.attempts(letter.id)
        assert attempt.outcome == "ok"

    async def test_balance_letters_carry_the_balance_and_reminders_the_contract(
        self, letter_engine: Engine
    ) -> None:
        await letter_engine.handle(
            event_body(
                "client.balance_changed", payload={"old_balance": "150.00", "new_balance": "50.00"}
            )
        )
        await letter_engine.handle(event_body("contract.created", payload=CONTRACT))
        [low] = await letter_engine.letters(letter="LowBalanceNotice")
        [first] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert low.context["balance"]["threshold"] == "100.00"
        assert "contract" not in low.context
        assert first.context["contract"]["id"] == "ct-1"
        assert first.contract_id == "ct-1"

    async def test_a_client_with_two_addresses_gets_one_letter_each(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        upstream.add_client(emails=["a@client-1.example", "b@client-1.example"])
        await letter_engine.handle(event_body("client.unblocked"))
        letters = await letter_engine.letters(letter="FinancialUnblockNotice")
        assert [x.recipient for x in letters] == ["a@client-1.example", "b@client-1.example"]
        assert len(gateway.sent_for("FinancialUnblockNotice")) == 2

    async def test_the_russian_locale_is_rendered_for_a_russian_client(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        upstream.add_client(locale="ru")
        await letter_engine.handle(event_body("client.unblocked"))
        [letter] = await letter_engine.letters(letter="FinancialUnblockNotice")
        [item] = gateway.sent_for("FinancialUnblockNotice")
        assert letter.locale == "ru"
        assert item["message"]["subject"] == expected_render(letter, letter_engine).subject
        assert (
            item["message"]["subject"]
            != render(
                "FinancialUnblockNotice",
                "en",
                {**letter.context, "letter": {"name": letter.letter, "id": letter.id}},
            ).subject
        )


class TestTimeZonesAndQuietHours:
    async def test_a_reminder_due_in_the_recipients_night_moves_to_nine_local(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        upstream.add_client(timezone="Asia/Vladivostok")  # UTC+10: 11:30 UTC = 21:30 local
        occurred = at(1, 11, 30)
        letter_engine.clock.set(occurred)
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=occurred)
        )
        [letter] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert letter.send_at == at(2, 23, 0)  # 09:00 on June 3rd in Vladivostok

    async def test_take_a_ride_is_at_eleven_in_the_recipients_zone(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        upstream.add_client(timezone="America/New_York")  # UTC-4 in June
        await letter_engine.handle(
            event_body("client.activated", payload=ACTIVATED_PREPAID, occurred_at=START)
        )
        [letter] = await letter_engine.letters(letter="PrepaidFirstTakeARideNotice")
        assert letter.send_at == at(4, 15)

    async def test_an_immediate_letter_respects_quiet_hours_when_configured(
        self, letter_engine: Engine, gateway: RecordingGateway, sessionmaker: Any
    ) -> None:
        from notifier.letters import settings_service
        from notifier_common.db import session_scope

        async with session_scope(sessionmaker) as s:
            await settings_service.update(
                s, "FinancialUnblockNotice", params={"respect_quiet_hours": True}, changed_by="ops"
            )
        night = at(1, 20, 0)  # 23:00 in Moscow
        letter_engine.clock.set(night)
        await letter_engine.handle(event_body("client.unblocked", occurred_at=night))
        [letter] = await letter_engine.letters(letter="FinancialUnblockNotice")
        assert letter.status == LetterStatus.scheduled
        assert letter.send_at == at(2, 6, 0)  # 09:00 Moscow
        assert gateway.sent == []

    async def test_a_letter_not_sent_before_its_expiry_ends_expired(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        [letter] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert letter.expires_at == letter.send_at + timedelta(days=2)
        late = letter.send_at + timedelta(days=2)
        await letter_engine.sender.drain(now=late)
        [letter] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert letter.status == LetterStatus.expired
        assert gateway.sent_for("FirstRemindPrepaidNotice") == []


REMINDERS = ["FirstRemindPrepaidNotice", "SecondRemindPrepaidNotice", "ThirdRemindPrepaidNotice"]
TAKE_A_RIDE = ["PrepaidFirstTakeARideNotice", "PrepaidSecondTakeARideNotice"]


class TestCancellation:
    @pytest.mark.parametrize(
        ("trigger", "trigger_payload", "cancel", "cancel_payload", "letters"),
        [
            (
                "contract.created",
                CONTRACT,
                "client.payment_received",
                {"amount": "500.00"},
                REMINDERS,
            ),
            ("contract.created", CONTRACT, "contract.closed", {"contract_id": "ct-1"}, REMINDERS),
            (
                "client.created_by_offer",
                {},
                "client.activated",
                ACTIVATED_POSTPAID,
                ["ThirdRemindOfferNotice"],
            ),
            (
                "client.activated",
                ACTIVATED_PREPAID,
                "order.first_completed",
                {"order_id": "o-1"},
                TAKE_A_RIDE,
            ),
        ],
        ids=["payment_received", "contract_closed", "client_activated", "first_order"],
    )
    async def test_the_cancelling_event_cancels_the_pending_letters(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        trigger: str,
        trigger_payload: dict[str, Any],
        cancel: str,
        cancel_payload: dict[str, Any],
        letters: list[str],
    ) -> None:
        await letter_engine.handle(event_body(trigger, payload=trigger_payload, occurred_at=START))
        later = letter_engine.clock.advance(timedelta(hours=2))
        cancel_body = event_body(cancel, payload=cancel_payload, occurred_at=later)
        await letter_engine.handle(cancel_body)
        for name in letters:
            [letter] = await letter_engine.letters(letter=name)
            assert letter.status == LetterStatus.cancelled
            assert letter.cancel_reason == f"cancelled by {cancel}"
            assert letter.cancelled_by_event_id == uuid.UUID(cancel_body["id"])
        letter_engine.clock.advance(timedelta(days=30))
        await letter_engine.sender.drain(now=letter_engine.clock())
        assert not any(gateway.sent_for(name) for name in letters)

    async def test_contract_closed_only_cancels_that_contracts_reminders(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        upstream.add_contract("ct-2")
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        await letter_engine.handle(
            event_body(
                "contract.created", payload={**CONTRACT, "contract_id": "ct-2"}, occurred_at=START
            )
        )
        letter_engine.clock.advance(timedelta(minutes=1))
        await letter_engine.handle(
            event_body(
                "contract.closed",
                payload={"contract_id": "ct-2"},
                occurred_at=letter_engine.clock(),
            )
        )
        statuses = {
            (x.contract_id, x.status)
            for x in await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        }
        assert statuses == {("ct-1", LetterStatus.scheduled), ("ct-2", LetterStatus.cancelled)}

    async def test_a_late_older_trigger_after_the_cancel_is_not_scheduled(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        payment = event_body("client.payment_received", occurred_at=START)
        await letter_engine.handle(payment)
        older = event_body(
            "contract.created", payload=CONTRACT, occurred_at=START - timedelta(hours=1)
        )
        assert await letter_engine.handle(older) == "processed"
        letters = await letter_engine.letters(event_id=uuid.UUID(older["id"]))
        assert {x.letter for x in letters} == set(REMINDERS)
        assert {x.status for x in letters} == {LetterStatus.cancelled}
        assert {x.cancelled_by_event_id for x in letters} == {uuid.UUID(payment["id"])}
        await letter_engine.sender.drain(now=START + timedelta(days=30))
        assert gateway.sent == []

    async def test_a_newer_trigger_after_a_cancel_is_scheduled(self, letter_engine: Engine) -> None:
        await letter_engine.handle(event_body("client.payment_received", occurred_at=START))
        newer = event_body(
            "contract.created", payload=CONTRACT, occurred_at=START + timedelta(minutes=5)
        )
        await letter_engine.handle(newer)
        letters = await letter_engine.letters(event_id=uuid.UUID(newer["id"]))
        assert {x.status for x in letters} == {LetterStatus.scheduled}

    async def test_a_reminder_whose_contract_got_paid_is_skipped_at_send_time(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        upstream.contracts["ct-1"]["is_paid"] = True  # no event told us
        await letter_engine.sender.drain(now=at(2, 10))
        [letter] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert letter.status == LetterStatus.skipped
        assert letter.skip_reason == "contract already paid"
        assert gateway.sent == []

    async def test_an_operators_bypassed_manual_send_is_not_rechecked(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        upstream.contracts["ct-1"]["is_paid"] = True
        async with letter_engine.sessionmaker() as s, s.begin():
            await s.execute(
                update(Letter)
                .where(Letter.letter == "FirstRemindPrepaidNotice")
                .values(
                    context=Letter.context.op("||")(
                        cast({"operator": {"by": "ops", "bypass_conditions": True}}, JSONB)
                    )
                )
            )
        await letter_engine.sender.drain(now=at(2, 10))
        [letter] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert letter.status == LetterStatus.sent
        assert len(gateway.sent_for("FirstRemindPrepaidNotice")) == 1
