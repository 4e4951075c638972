"""Frequency rules, idempotency, enrichment failures, switches and settings."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from notifier.events.processing import TransientEventError
from notifier.letters import service, settings_service
from notifier.models import Event, EventStatus, LetterSettingAudit, LetterStatus
from notifier_common.db import session_scope
from notifier_common.errors import NotFound, Unprocessable
from notifier_common.events import parse_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream

CONTRACT = {"contract_id": "ct-1", "payment_type": "prepaid", "is_paid": False}


def balance(old: str, new: str, *, hours: float = 0) -> dict[str, Any]:
    return event_body(
        "client.balance_changed",
        payload={"old_balance": old, "new_balance": new},
        occurred_at=START + timedelta(hours=hours),
    )


async def feed(engine: Engine, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert await engine.handle(body) == "processed"


class TestLowBalance:
    async def test_at_most_once_per_24_hours_even_when_re_armed(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        await feed(
            letter_engine,
            balance("150.00", "50.00"),  # crosses below 100: sent
            balance("50.00", "200.00", hours=1),  # back above: re-armed
            balance("200.00", "40.00", hours=2),  # crosses again within 24 h: capped
        )
        assert len(await letter_engine.letters(letter="LowBalanceNotice")) == 1
        await feed(
            letter_engine,
            balance("40.00", "250.00", hours=3),
            balance("250.00", "30.00", hours=25),  # re-armed and 24 h passed: sent
        )
        letters = await letter_engine.letters(letter="LowBalanceNotice")
        assert len(letters) == 2
        assert len(gateway.sent_for("LowBalanceNotice")) == 2

    async def test_not_re_armed_without_rising_above_the_threshold(
        self, letter_engine: Engine
    ) -> None:
        await feed(
            letter_engine,
            balance("150.00", "50.00"),
            balance("150.00", "60.00", hours=30),  # a second "crossing" report, never re-armed
        )
        assert len(await letter_engine.letters(letter="LowBalanceNotice")) == 1

    async def test_the_cap_is_a_parameter(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with session_scope(sessionmaker) as s:
            await settings_service.update(
                s, "LowBalanceNotice", params={"min_interval": "PT1H"}, changed_by="ops"
            )
        await feed(
            letter_engine,
            balance("150.00", "50.00"),
            balance("50.00", "200.00", hours=1),
            balance("200.00", "40.00", hours=2),
        )
        assert len(await letter_engine.letters(letter="LowBalanceNotice")) == 2


class TestLimitIsOver:
    async def test_once_per_crossing(self, letter_engine: Engine, upstream: Upstream) -> None:
        await feed(
            letter_engine,
            balance("100.00", "-5.00"),  # crosses the limit (0): sent
            balance("50.00", "-10.00", hours=1),  # reported crossing again, not re-armed: no
            balance("-10.00", "20.00", hours=2),  # back above: re-armed
            balance("20.00", "0.00", hours=3),  # to <= limit again: sent
        )
        letters = await letter_engine.letters(letter="LimitIsOverNotice")
        assert len(letters) == 2
        assert letters[0].context["balance"]["limit"] == "0.00"

    async def test_an_older_balance_event_does_not_rewind_the_state(
        self, letter_engine: Engine
    ) -> None:
        await feed(letter_engine, balance("100.00", "-5.00", hours=5))
        await feed(letter_engine, balance("-5.00", "20.00", hours=1))  # late: ignored
        await feed(letter_engine, balance("20.00", "-1.00", hours=6))
        assert len(await letter_engine.letters(letter="LimitIsOverNotice")) == 1


class TestIdempotency:
    async def test_a_redelivered_event_creates_and_sends_nothing_twice(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        body = event_body(
            "client.activated", payload={"payment_type": "prepaid"}, occurred_at=START
        )
        assert await letter_engine.handle(body) == "processed"
        assert await letter_engine.handle(body) == "duplicate"
        assert len(await letter_engine.letters()) == 3
        assert len(gateway.sent) == 1

    async def test_processing_an_event_twice_inserts_no_second_row(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        from notifier_common.events import parse_event

        event = parse_event(event_body("contract.created", payload=CONTRACT, occurred_at=START))
        for _ in range(2):  # e.g. arq re-running a job whose first run committed
            async with session_scope(sessionmaker) as s:
                await letter_engine.processor.process(s, event)
        assert len(await letter_engine.letters()) == 3

    async def test_a_second_event_about_the_same_contract_is_deduplicated(
        self, letter_engine: Engine
    ) -> None:
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        assert len(await letter_engine.letters(letter="FirstRemindPrepaidNotice")) == 1


class TestEnrichmentFailures:
    async def test_client_not_found_fails_the_event_and_creates_no_letter(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = event_body("client.unblocked", client_id="ghost", occurred_at=START)
        assert await letter_engine.handle(body) == "failed"
        async with sessionmaker() as s:
            event = await s.get(Event, uuid.UUID(body["id"]))
        assert event is not None
        assert event.status == EventStatus.failed
        assert "ghost" in event.error["message"]
        assert await letter_engine.letters() == []

    @pytest.mark.parametrize("failure", ["500", "timeout"])
    async def test_an_unavailable_upstream_is_retried_later(
        self,
        letter_engine: Engine,
        upstream: Upstream,
        gateway: RecordingGateway,
        failure: str,
    ) -> None:
        upstream.fail_with = 500 if failure == "500" else None
        upstream.timeout = failure == "timeout"
        body = event_body("client.unblocked", occurred_at=START)
        with pytest.raises(TransientEventError):
            await letter_engine.handle(body)
        assert upstream.calls == 4  # the enrichment client's own retries
        assert await letter_engine.letters() == []
        upstream.fail_with, upstream.timeout = None, False
        assert await letter_engine.handle(body) == "processed"
        assert len(gateway.sent_for("FinancialUnblockNotice")) == 1


class TestTemplateErrors:
    async def test_a_letter_that_cannot_render_fails_with_a_clear_message(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        from notifier.models import Letter

        await letter_engine.handle(
            event_body("contract.created", payload=CONTRACT, occurred_at=START)
        )
        async with session_scope(sessionmaker) as s:  # a snapshot the template cannot render
            for row in (await s.execute(select(Letter))).scalars():
                if row.letter == "FirstRemindPrepaidNotice":
                    row.context = {k: v for k, v in row.context.items() if k != "contract"}
        report = await letter_engine.sender.drain(now=START + timedelta(days=2))
        [broken] = await letter_engine.letters(letter="FirstRemindPrepaidNotice")
        assert broken.status == LetterStatus.failed
        assert broken.last_error is not None
        assert broken.last_error.startswith("template error:")
        assert "contract" in broken.last_error
        [attempt] = await letter_engine.attempts(broken.id)
        assert attempt.code == "template_error"
        assert (report.failed, report.sent) == (1, 0)
        # the engine goes on: the next reminder is sent when due
        await letter_engine.sender.drain(now=START + timedelta(days=3))
        assert len(gateway.sent_for("SecondRemindPrepaidNotice")) == 1


class TestSwitches:
    async def test_a_disabled_letter_is_not_created(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with session_scope(sessionmaker) as s:
            await settings_service.update(
                s, "FinancialUnblockNotice", enabled=False, changed_by="ops"
            )
        await letter_engine.handle(event_body("client.unblocked", occurred_at=START))
        assert await letter_engine.letters() == []

    async def test_a_letter_disabled_after_scheduling_is_skipped_at_send_time(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await letter_engine.handle(event_body("client.created_by_offer", occurred_at=START))
        async with session_scope(sessionmaker) as s:
            await settings_service.update(
                s, "ThirdRemindOfferNotice", enabled=False, changed_by="ops"
            )
        await letter_engine.sender.drain(now=START + timedelta(days=7))
        [letter] = await letter_engine.letters()
        assert letter.status == LetterStatus.skipped
        assert letter.skip_reason == "letter switched off"
        assert gateway.sent == []

    async def test_a_delay_override_changes_the_schedule(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with session_scope(sessionmaker) as s:
            await settings_service.update(
                s, "ThirdRemindOfferNotice", params={"delay": "P2D"}, changed_by="ops"
            )
        await letter_engine.handle(event_body("client.created_by_offer", occurred_at=START))
        [letter] = await letter_engine.letters()
        assert letter.send_at == START + timedelta(days=2)
        assert letter.context["params"]["delay"] == "P2D"


class TestSettingsService:
    async def test_update_merges_validates_and_audits(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with session_scope(sessionmaker) as s:
            first = await settings_service.update(
                s, "PrepaidFirstTakeARideNotice", params={"days": 4}, changed_by="alice"
            )
            second = await settings_service.update(
                s, "PrepaidFirstTakeARideNotice", params={"at": "10:30"}, changed_by="bob"
            )
        assert first.params.model_dump()["days"] == 4
        assert second.overrides == {"days": 4, "at": "10:30:00"}
        async with sessionmaker() as s:
            audit = list(
                (
                    await s.execute(select(LetterSettingAudit).order_by(LetterSettingAudit.id))
                ).scalars()
            )
            effective = await settings_service.effective(s, ["PrepaidFirstTakeARideNotice"])
        assert [(a.changed_by, a.old, a.new) for a in audit] == [
            ("alice", None, {"enabled": True, "params": {"days": 4}}),
            (
                "bob",
                {"enabled": True, "params": {"days": 4}},
                {"enabled": True, "params": {"days": 4, "at": "10:30:00"}},
            ),
        ]
        assert effective["PrepaidFirstTakeARideNotice"].params.model_dump()["days"] == 4

    async def test_invalid_parameters_are_refused_and_nothing_is_written(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(Unprocessable) as caught:
            async with session_scope(sessionmaker) as s:
                await settings_service.update(
                    s, "PrepaidFirstTakeARideNotice", params={"days": -1, "nope": 1}, changed_by="x"
                )
        locs = {e["loc"] for e in caught.value.errors or []}
        assert locs == {"params.days", "params.nope"}
        async with sessionmaker() as s:
            assert (await s.execute(select(LetterSettingAudit))).first() is None

    async def test_an_unknown_letter_is_not_found(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(NotFound):
            async with session_scope(sessionmaker) as s:
                await settings_service.update(s, "NoSuchNotice", enabled=False, changed_by="x")


class TestPayloadFields:
    """What the planning reads of a payload: its field, or None for a payload type without
    that field (``payload_field`` reads the model's fields without ``getattr``'s
    ``AttributeError`` for a missing one)."""

    def test_a_field_of_the_payload_type_and_one_it_does_not_have(self) -> None:
        contract = parse_event(event_body("contract.created", payload=CONTRACT))
        activated = parse_event(
            event_body("client.activated", payload={"payment_type": "prepaid", "service": "taxi"})
        )
        assert service.contract_id_of(contract) == "ct-1"
        assert service.contract_id_of(activated) is None
        assert service.payload_field(activated, "service") == "taxi"
        assert service.payload_field(activated, "language") is None
        assert service.payload_field(activated, "model_fields") is None  # fields only
