"""Coalesced immediate sends: concurrent events' due letters go out in one gateway call."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from notifier.letters.immediate import ImmediateSends
from notifier.models import LetterStatus
from notifier.operator import repository as operator_repository
from notifier_common.db import session_scope
from sqlalchemy import text

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream
from tests.statements import round_trips

ACTIVATED = {"payment_type": "prepaid", "service": "taxi"}


async def statuses(engine: Engine) -> set[LetterStatus]:
    return {x.status for x in await engine.letters(letter="ActivateClientNotice")}


async def due_letters(engine: Engine, upstream: Upstream, clients: int) -> list[int]:
    """Letters due now, created with no sender attached (nothing sent yet)."""
    engine.processor.sender = None
    for n in range(clients):
        upstream.add_client(f"c-{n}")
        body = event_body("client.activated", client_id=f"c-{n}", payload=ACTIVATED)
        body["occurred_at"] = START.isoformat()
        await engine.handle(body)
    letters = await engine.letters(letter="ActivateClientNotice")
    assert len(letters) == clients
    return [x.id for x in letters]


class TestImmediateSends:
    async def test_concurrent_sends_share_one_gateway_call(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        ids = await due_letters(letter_engine, upstream, 5)
        sends = ImmediateSends(letter_engine.sender, window=0.001)
        await asyncio.gather(*(sends.send([i]) for i in ids))
        assert gateway.calls == 1
        assert len(gateway.sent) == 5
        assert await statuses(letter_engine) == {LetterStatus.sent}

    async def test_a_failed_send_leaves_the_letters_to_the_drain(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        ids = await due_letters(letter_engine, upstream, 2)
        gateway.fail_with = 503
        await ImmediateSends(letter_engine.sender, window=0).send(ids)  # does not raise
        assert gateway.sent == []
        gateway.fail_with = None
        letter_engine.clock.advance(timedelta(hours=2))  # past the retry backoff
        await letter_engine.sender.drain(now=letter_engine.clock())
        assert len(gateway.sent) == 2

    async def test_an_immediate_send_is_one_transaction(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """Decision 0090: lock, settings, suppressions, send, record, commit."""
        from tests.notifier.letters.test_drain_pipeline import CountingSessions

        ids = await due_letters(letter_engine, upstream, 2)
        sessions = CountingSessions(letter_engine.sender.sessionmaker)
        letter_engine.sender.sessionmaker = sessions  # type: ignore[assignment]
        report = await letter_engine.sender.send_now(ids)
        assert report.sent == 2
        assert sessions.opened == 1

    async def test_an_immediate_send_is_seven_round_trips(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """The round trips of the path (decisions 0083, 0090, 0107), seen by asyncpg: in one
        transaction, lock the due rows, read their settings and their suppressions, write the
        results and the attempts."""
        ids = await due_letters(letter_engine, upstream, 3)
        async with round_trips(letter_engine.sender.sessionmaker.kw["bind"]) as seen:
            report = await letter_engine.sender.send_now(ids)
        assert report.sent == 3
        assert (seen[0], seen[-1]) == ("BEGIN;", "COMMIT;")
        expected = [
            "INSERT INTO notifier.attempts",
            "SELECT l.id, l.letter",  # the lock
            "SELECT notifier.letter_settings.letter,",
            "SELECT notifier.suppressions.address,",
            "UPDATE notifier.letters AS l",
        ]
        middle = sorted(seen[1:-1])
        assert len(middle) == len(expected), seen
        assert all(s.startswith(e) for s, e in zip(middle, expected, strict=True)), seen
        letters = await letter_engine.letters(letter="ActivateClientNotice")
        assert {(x.status, x.attempts) for x in letters} == {(LetterStatus.sent, 1)}
        async with letter_engine.sessionmaker() as session:
            tries = await session.execute(
                text("SELECT letter_id, try_number, outcome FROM notifier.attempts")
            )
            assert sorted(tries.all()) == [(i, 1, "ok") for i in sorted(ids)]

    async def test_while_at_the_gateway_the_letters_are_held_by_row_locks_only(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """No ``sending`` row is written: to everyone else the letters are still scheduled,
        and a drain running meanwhile skips them (no double send)."""
        ids = await due_letters(letter_engine, upstream, 2)
        paused = PausedGateway(letter_engine)
        task = asyncio.create_task(letter_engine.sender.send_now(ids))
        await asyncio.wait_for(paused.reached.wait(), 5)
        drained = await letter_engine.sender.drain(now=letter_engine.clock())
        assert (drained.claimed, drained.batches) == (0, 0)
        assert await statuses(letter_engine) == {LetterStatus.scheduled}
        paused.release.set()
        report = await task
        assert report.sent == 2
        assert len(gateway.sent) == 2
        assert await statuses(letter_engine) == {LetterStatus.sent}

    async def test_a_send_that_dies_at_the_gateway_leaves_the_letters_due_at_once(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """The process dies during the gateway call: its transaction rolls back, the letters
        are scheduled and due (no lease to wait out) and the next drain sends them."""
        ids = await due_letters(letter_engine, upstream, 2)
        paused = PausedGateway(letter_engine)
        task = asyncio.create_task(letter_engine.sender.send_now(ids))
        await asyncio.wait_for(paused.reached.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await statuses(letter_engine) == {LetterStatus.scheduled}
        paused.restore()
        report = await letter_engine.sender.drain(now=letter_engine.clock())
        assert report.sent == 2
        assert sorted(i["idempotency_key"] for i in gateway.sent) == sorted(
            f"letter-{i}" for i in ids
        )

    async def test_a_cancel_during_the_send_waits_and_then_finds_it_sent(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """Decision 0020 with the row-lock claim: the operator's cancel blocks on the row until
        the send commits, then finds the letter no longer scheduled (409)."""
        [letter_id] = await due_letters(letter_engine, upstream, 1)
        paused = PausedGateway(letter_engine)
        send = asyncio.create_task(letter_engine.sender.send_now([letter_id]))
        await asyncio.wait_for(paused.reached.wait(), 5)
        cancel = asyncio.create_task(operator_cancel(letter_engine, letter_id))
        await asyncio.sleep(0.2)
        assert not cancel.done()  # waiting for the row lock
        paused.release.set()
        assert (await send).sent == 1
        assert await cancel is False
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.sent

    async def test_a_cancel_after_a_failed_send_cancels_for_good(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """The gateway is down: the send's transaction rolls back, the waiting cancel then
        cancels the letter, and no drain sends it afterwards."""
        [letter_id] = await due_letters(letter_engine, upstream, 1)
        paused = PausedGateway(letter_engine)
        gateway.fail_with = 503
        send = asyncio.create_task(letter_engine.sender.send_now([letter_id]))
        await asyncio.wait_for(paused.reached.wait(), 5)
        cancel = asyncio.create_task(operator_cancel(letter_engine, letter_id))
        await asyncio.sleep(0.2)
        assert not cancel.done()
        paused.release.set()
        with contextlib.suppress(Exception):
            await send
        assert await cancel is True
        gateway.fail_with = None
        letter_engine.clock.advance(timedelta(hours=2))
        await letter_engine.sender.drain(now=letter_engine.clock())
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.cancelled
        assert gateway.sent == []

    async def test_batches_are_cut_at_max_batch(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        ids = await due_letters(letter_engine, upstream, 3)
        await ImmediateSends(letter_engine.sender, window=0, max_batch=2).send(ids)
        assert gateway.calls == 2
        assert len(gateway.sent) == 3


async def operator_cancel(engine: Engine, letter_id: int) -> bool:
    """The operator API's cancel, in a transaction of its own."""
    async with session_scope(engine.sessionmaker) as session:
        return await operator_repository.cancel_if_scheduled(
            session, letter_id, reason="operator", now=engine.clock()
        )


class PausedGateway:
    """The sender's gateway calls wait at the gateway until ``release`` is set (``reached``
    tells that one got there), then go to the recording gateway."""

    def __init__(self, engine: Engine) -> None:
        self.gateway = engine.sender.gateway
        self.real = self.gateway.send_encoded
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.gateway.send_encoded = self.send_encoded  # type: ignore[method-assign]

    async def send_encoded(self, items: Any) -> Any:
        self.reached.set()
        await self.release.wait()
        return await self.real(items)

    def restore(self) -> None:
        self.gateway.send_encoded = self.real  # type: ignore[method-assign]


class SlowFirstSend:
    """The sender's first ``send_now`` hangs until ``release`` is set (a gateway call that
    hangs); every call is recorded and then runs for real."""

    def __init__(self, engine: Engine) -> None:
        self.release = asyncio.Event()
        self.first_started = asyncio.Event()
        self.started: list[list[int]] = []
        self.real = engine.sender.send_now
        engine.sender.send_now = self.send_now  # type: ignore[method-assign]

    async def send_now(self, ids: list[int]) -> object:
        self.started.append(list(ids))
        if len(self.started) == 1:
            self.first_started.set()
            await self.release.wait()
        return await self.real(ids)


class TestSendsInFlight:
    async def test_a_slow_send_does_not_hold_back_the_next_batch(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        """Decision 0078: letters handed over while a gateway call hangs go out in their own
        call at once; each caller returns when its own letters are sent; none twice."""
        ids = await due_letters(letter_engine, upstream, 3)
        slow = SlowFirstSend(letter_engine)
        sends = ImmediateSends(letter_engine.sender, window=0.001, max_in_flight=2)
        first = asyncio.create_task(sends.send([ids[0]]))
        await asyncio.wait_for(slow.first_started.wait(), 2)
        await asyncio.wait_for(sends.send(ids[1:]), 5)  # finishes while the first hangs
        assert not first.done()
        assert slow.started == [[ids[0]], ids[1:]]
        assert len(gateway.sent) == 2
        slow.release.set()
        await first
        await sends.aclose()
        assert gateway.calls == 2
        assert sorted(i["idempotency_key"] for i in gateway.sent) == sorted(
            f"letter-{i}" for i in ids
        )

    async def test_when_every_slot_is_busy_ids_wait_and_gather_into_one_batch(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        ids = await due_letters(letter_engine, upstream, 3)
        slow = SlowFirstSend(letter_engine)
        sends = ImmediateSends(letter_engine.sender, window=0.001, max_in_flight=1)
        first = asyncio.create_task(sends.send([ids[0]]))
        await asyncio.wait_for(slow.first_started.wait(), 2)
        later = [asyncio.create_task(sends.send([i])) for i in ids[1:]]
        await asyncio.sleep(0.05)
        assert len(slow.started) == 1  # the only slot is taken: nothing else is sent meanwhile
        assert not any(t.done() for t in later)
        slow.release.set()
        await asyncio.gather(first, *later)
        assert slow.started == [[ids[0]], ids[1:]]  # the waiting ids went out together
        assert len(gateway.sent) == 3
