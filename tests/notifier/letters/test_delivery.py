"""Gateway outcomes, backoff, crash safety and cancellation racing the drain."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from notifier.letters import repository
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from notifier_common.db import session_scope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import (
    GATEWAY,
    START,
    Engine,
    FakeClock,
    RecordingGateway,
    build_engine,
)

OFFER = "ThirdRemindOfferNotice"
DUE = START + timedelta(days=7)


async def schedule_offer_reminder(engine: Engine) -> int:
    await engine.handle(event_body("client.created_by_offer", occurred_at=START))
    [letter] = await engine.letters(letter=OFFER)
    return letter.id


class TestGatewayOutcomes:
    async def test_a_transient_failure_goes_back_to_scheduled_with_backoff(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        letter_id = await schedule_offer_reminder(letter_engine)
        gateway.fail_with = 503
        report = await letter_engine.sender.drain(now=DUE)
        assert report.retried == 1
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.scheduled
        assert letter.attempts == 1
        base = letter_engine.sender.config.backoff_base
        assert DUE + timedelta(seconds=base / 2) <= letter.send_at <= DUE + timedelta(seconds=base)
        [attempt] = await letter_engine.attempts(letter_id)
        assert (attempt.outcome, attempt.code, attempt.status_code) == (
            "transient",
            "gateway_http_503",
            503,
        )
        assert (letter.sent_at, letter.updated_at, attempt.created_at) == (None, DUE, DUE)
        gateway.fail_with = None
        retry_at = letter.send_at
        await letter_engine.sender.drain(now=retry_at)
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.attempts) == (LetterStatus.sent, 2)
        # the batch's time, written once per statement (issue 7): sent, updated, tried
        assert (letter.sent_at, letter.updated_at, letter.send_at) == (retry_at, retry_at, retry_at)
        tries = await letter_engine.attempts(letter_id)
        assert [a.outcome for a in tries] == ["transient", "ok"]
        assert [a.created_at for a in tries] == [DUE, retry_at]

    async def test_transient_failures_until_attempts_are_exhausted_fail_the_letter(
        self,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: FakeClock,
        http: httpx.AsyncClient,
        router: respx.MockRouter,
        gateway: RecordingGateway,
    ) -> None:
        engine = build_engine(
            settings.model_copy(update={"letters_max_attempts": 2}), sessionmaker, clock, http
        )
        letter_id = await schedule_offer_reminder(engine)
        gateway.fail_with = 500
        now = DUE
        for _ in range(2):
            await engine.sender.drain(now=now)
            now += timedelta(hours=2)
        [letter] = await engine.letters(id=letter_id)
        assert letter.status == LetterStatus.failed
        assert letter.last_error is not None
        assert letter.last_error.startswith("attempts exhausted (2)")

    async def test_a_permanent_error_fails_the_letter(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        gateway.outcome_for[OFFER] = "permanent_error"
        letter_id = await schedule_offer_reminder(letter_engine)
        await letter_engine.sender.drain(now=DUE)
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.failed
        assert [a.outcome for a in await letter_engine.attempts(letter_id)] == ["permanent"]

    async def test_a_suppressed_recipient_is_skipped_with_the_gateway_code(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        gateway.outcome_for[OFFER] = "skipped"
        letter_id = await schedule_offer_reminder(letter_engine)
        await letter_engine.sender.drain(now=DUE)
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.skip_reason) == (LetterStatus.skipped, "suppressed")

    async def test_an_immediate_letter_falls_back_to_the_drain_when_the_gateway_is_down(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        gateway.fail_with = 502
        assert (
            await letter_engine.handle(event_body("client.unblocked", occurred_at=START))
            == "processed"
        )
        [letter] = await letter_engine.letters()
        assert (letter.status, letter.attempts) == (LetterStatus.scheduled, 1)
        assert letter.send_at > START
        gateway.fail_with = None
        await letter_engine.sender.drain(now=START + timedelta(hours=1))
        [letter] = await letter_engine.letters()
        assert letter.status == LetterStatus.sent
        assert len(gateway.sent) == 1

    async def test_an_unreachable_gateway_is_transient(
        self, letter_engine: Engine, router: respx.MockRouter
    ) -> None:
        router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=httpx.ConnectError("refused"))
        letter_id = await schedule_offer_reminder(letter_engine)
        await letter_engine.sender.drain(now=DUE)
        [attempt] = await letter_engine.attempts(letter_id)
        assert (attempt.outcome, attempt.code) == ("transient", "gateway_unreachable")

    async def test_one_batch_call_carries_every_due_letter(
        self, letter_engine: Engine, gateway: RecordingGateway, upstream: Any
    ) -> None:
        for n in range(30):
            upstream.add_client(f"c{n}")
            body = event_body("client.created_by_offer", client_id=f"c{n}", occurred_at=START)
            await letter_engine.handle(body)
        await letter_engine.sender.drain(now=DUE)
        assert gateway.calls == 1
        assert len(gateway.sent) == 30
        assert len({i["idempotency_key"] for i in gateway.sent}) == 30


class TestCrashSafety:
    async def test_a_worker_dying_during_the_gateway_call_leaves_the_letter_due_at_once(
        self, letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter
    ) -> None:
        """The claim is the batch's row lock (decision 0103): the dead worker's transaction
        rolls back, nothing is left ``sending`` under a lease, the next drain sends it."""
        letter_id = await schedule_offer_reminder(letter_engine)
        in_gateway = asyncio.Event()

        async def hanging_gateway(request: httpx.Request) -> httpx.Response:
            in_gateway.set()
            await asyncio.Event().wait()  # never answers: the worker dies here
            raise AssertionError("not reached")

        route = router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=hanging_gateway)
        drain = asyncio.create_task(letter_engine.sender.drain(now=DUE))
        await asyncio.wait_for(in_gateway.wait(), 5)
        drain.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drain
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.lease_until, letter.attempts) == (
            LetterStatus.scheduled,
            None,
            0,
        )
        route.side_effect = gateway.handle
        report = await letter_engine.sender.drain(now=DUE)
        assert (report.claimed, report.sent) == (1, 1)
        assert [i["idempotency_key"] for i in gateway.sent] == [f"letter-{letter_id}"]

    async def test_a_worker_killed_after_the_gateway_accepted_is_not_sent_twice(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        letter_id = await schedule_offer_reminder(letter_engine)

        async def crash(*_args: Any, **_kw: Any) -> None:
            raise ConnectionResetError("worker lost its database connection")

        with monkeypatch.context() as m:
            m.setattr(repository, "update_letters", crash)
            with pytest.raises(ConnectionResetError):
                await letter_engine.sender.drain(now=DUE)
        assert len(gateway.sent) == 1  # the provider has it
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.scheduled  # but it was never marked
        await letter_engine.sender.drain(now=DUE)  # due again at once: no lease to wait out
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.sent
        assert gateway.calls == 2  # asked again, with the same key ...
        assert len(gateway.sent) == 1  # ... and answered from the gateway's store

    async def test_a_letter_an_earlier_version_left_sending_is_taken_after_its_lease(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        """Before decision 0103 the drain committed ``sending`` with a lease: such a row (a
        worker of that version died) is sent once its lease ran out, not before."""
        letter_id = await schedule_offer_reminder(letter_engine)
        async with session_scope(letter_engine.sessionmaker) as session:
            await session.execute(
                text(
                    "UPDATE notifier.letters SET status = 'sending', lease_until = :until,"
                    " lease_token = gen_random_uuid() WHERE id = :id"
                ),
                {"until": DUE + timedelta(minutes=2), "id": letter_id},
            )
        assert (await letter_engine.sender.drain(now=DUE + timedelta(minutes=1))).claimed == 0
        report = await letter_engine.sender.drain(now=DUE + timedelta(minutes=2))
        assert (report.claimed, report.sent) == (1, 1)
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.lease_until, letter.lease_token) == (
            LetterStatus.sent,
            None,
            None,
        )
        assert len(gateway.sent_for(OFFER)) == 1


class TestCancellationRacingTheDrain:
    async def test_a_row_a_cancel_holds_is_passed_over_and_the_cancel_wins(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        letter_id = await schedule_offer_reminder(letter_engine)
        async with session_scope(letter_engine.sessionmaker) as cancel:
            # the lock a cancel's UPDATE takes, held while the drain runs
            await cancel.execute(
                text("SELECT id FROM notifier.letters WHERE id = :id FOR UPDATE"),
                {"id": letter_id},
            )
            report = await asyncio.wait_for(letter_engine.sender.drain(now=DUE), 10)
            assert report.claimed == 0  # skipped, not waited for
            await cancel.execute(
                text("UPDATE notifier.letters SET status = 'cancelled' WHERE id = :id"),
                {"id": letter_id},
            )
        assert (await letter_engine.sender.drain(now=DUE)).claimed == 0
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.cancelled
        assert gateway.sent_for(OFFER) == []

    async def test_a_cancel_arriving_during_the_send_waits_and_finds_it_sent(
        self, letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter
    ) -> None:
        letter_id = await schedule_offer_reminder(letter_engine)
        letter_engine.clock.set(DUE)
        in_gateway, release = asyncio.Event(), asyncio.Event()

        async def slow_gateway(request: httpx.Request) -> httpx.Response:
            in_gateway.set()
            await release.wait()
            return gateway.handle(request)

        router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=slow_gateway)
        drain = asyncio.create_task(letter_engine.sender.drain(now=DUE))
        await asyncio.wait_for(in_gateway.wait(), 5)
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.scheduled  # held by the row lock alone (0103)
        cancel = event_body(
            "client.activated", payload={"payment_type": "prepaid"}, occurred_at=DUE
        )
        cancelling = asyncio.create_task(letter_engine.handle(cancel))
        await asyncio.sleep(0.3)
        assert not cancelling.done()  # blocked on the row the drain holds
        release.set()
        await drain
        assert await cancelling == "processed"
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.sent
        assert letter.cancel_reason is None
        assert len(gateway.sent_for(OFFER)) == 1

    async def test_an_operator_cancel_waits_for_a_failing_batch_then_cancels_for_good(
        self, letter_engine: Engine, gateway: RecordingGateway
    ) -> None:
        """Decision 0103: before, a drained letter read ``sending`` and the cancel answered 409
        at once; now it waits for the batch and, the send having failed (``scheduled`` for a
        retry), cancels it, and no later drain sends it."""
        from tests.notifier.letters.test_immediate import PausedGateway, operator_cancel

        letter_id = await schedule_offer_reminder(letter_engine)
        paused = PausedGateway(letter_engine)
        gateway.fail_with = 503
        drain = asyncio.create_task(letter_engine.sender.drain(now=DUE))
        await asyncio.wait_for(paused.reached.wait(), 5)
        cancel = asyncio.create_task(operator_cancel(letter_engine, letter_id))
        await asyncio.sleep(0.2)
        assert not cancel.done()  # waiting for the batch's row lock
        paused.release.set()
        assert (await drain).retried == 1
        assert await cancel is True
        gateway.fail_with = None
        paused.restore()
        assert (await letter_engine.sender.drain(now=DUE + timedelta(hours=3))).claimed == 0
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.cancelled
        assert gateway.sent_for(OFFER) == []


def test_gateway_request_body_matches_the_gateway_contract() -> None:
    from notifier.gateway_client import GatewayItem, GatewayMessage, GatewayRecipient

    item = GatewayItem(
        idempotency_key="letter-1",
        message=GatewayMessage(
            channel="email",
            to=[GatewayRecipient(address="a@b.example", name="A")],
            subject="s",
            html="<p>h</p>",
            text="t",
            unsubscribe_url="http://u",
            metadata={"letter_id": 1, "letter": "X", "client_id": "c"},
        ),
    )
    from gateway.providers.base import Message  # the test may read the gateway's model

    body = json.loads(item.model_dump_json(exclude_none=True))
    assert Message.model_validate(body["message"]).subject == "s"
