"""The worker's group commit (decision 0040): many events' letters decided and written in one
transaction must come out exactly as if each event had been handled alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from notifier.events import repository as events_repository
from notifier.events.batching import EventBatcher, handle_many
from notifier.events.processing import PermanentEventError
from notifier.letters.processor import LetterProcessor
from notifier.letters.settings_service import SettingsCache
from notifier.models import Event, EventStatus, Letter
from notifier_common.db import session_scope
from notifier_common.events import AnyEvent, parse_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, Upstream

CLIENTS = 3


def batch_processor(engine: Engine) -> LetterProcessor:
    """The worker's processor: settings through a cache (ttl 0 here: always read)."""
    single = engine.processor
    return LetterProcessor(
        enricher=single.enricher,
        config=single.config,
        clock=single.clock,
        sender=single.sender,
        settings=SettingsCache(engine.sessionmaker, ttl=0),
    )


def story(client_id: str) -> list[dict[str, Any]]:
    """One client's events, in order: triggers, a crossing and a repeat, cancels, a late trigger."""
    contract = f"ct-{client_id}"
    reminder = {"contract_id": contract, "payment_type": "prepaid"}
    drop = {"old_balance": "1000.00", "new_balance": "50.00", "contract_id": contract}

    def ev(type_: str, minutes: int, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        at = START + timedelta(minutes=minutes)
        return event_body(type_, client_id=client_id, payload=payload, occurred_at=at)

    return [
        ev("contract.created", 0, reminder),
        ev("client.balance_changed", 1, drop),
        ev("client.balance_changed", 2, {**drop, "new_balance": "40.00"}),
        ev("client.created_by_offer", 3),
        ev("client.payment_received", 4, {"amount": "500.00", "contract_id": contract}),
        ev("contract.created", -10, reminder),  # older than the payment: written cancelled
        ev("client.activated", 5, {"payment_type": "prepaid", "service": "taxi"}),
        ev("order.first_completed", 6, {"order_id": "o-1"}),
    ]


def add_clients(upstream: Upstream, prefix: str) -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(CLIENTS)]
    for client_id in ids:
        upstream.add_client(client_id)
        upstream.balances[client_id]["contract_id"] = f"ct-{client_id}"
        upstream.add_contract(f"ct-{client_id}", client_id)
    return ids


def summary(letters: list[Letter], prefix: str) -> list[tuple[Any, ...]]:
    return sorted(
        (
            x.client_id.removeprefix(prefix),
            x.letter,
            x.status.value,
            x.send_at,
            x.cancel_reason,
            x.cancelled_by_event_id is not None,
        )
        for x in letters
    )


async def letters_of(engine: Engine, prefix: str) -> list[Letter]:
    async with engine.sessionmaker() as s:
        rows = await s.execute(select(Letter).where(Letter.client_id.like(f"{prefix}-%")))
        return list(rows.scalars())


class TestHandleMany:
    async def test_batches_of_several_clients_write_what_one_by_one_writes(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        alone, grouped = add_clients(upstream, "alone"), add_clients(upstream, "grouped")
        for client_id in alone:
            for body in story(client_id):
                assert await letter_engine.handle(body) == "processed"
        processor = batch_processor(letter_engine)
        stories = [story(client_id) for client_id in grouped]
        for step in range(len(stories[0])):  # batch k = the k-th event of every client
            events = [parse_event(s[step]) for s in stories]
            items = [(e, await processor.prepare(e)) for e in events]
            outcomes, after = await handle_many(letter_engine.sessionmaker, processor, items)
            assert outcomes == ["processed"] * CLIENTS
            for action in after:
                await action()
        expected = summary(await letters_of(letter_engine, "alone"), "alone")
        assert summary(await letters_of(letter_engine, "grouped"), "grouped") == expected
        statuses = {x[2] for x in expected}
        assert {"cancelled", "sent"} <= statuses  # the story covers both paths

    async def test_an_event_already_processed_is_a_duplicate(self, letter_engine: Engine) -> None:
        processor = batch_processor(letter_engine)
        event = parse_event(event_body("client.created_by_offer", occurred_at=START))
        item = (event, await processor.prepare(event))
        assert (await handle_many(letter_engine.sessionmaker, processor, [item]))[0] == [
            "processed"
        ]
        assert (await handle_many(letter_engine.sessionmaker, processor, [item]))[0] == [
            "duplicate"
        ]
        assert len(await letter_engine.letters()) == 1

    async def test_new_events_are_stored_processed_with_their_time(
        self, letter_engine: Engine
    ) -> None:
        processor = batch_processor(letter_engine)
        event = parse_event(event_body("client.created_by_offer", occurred_at=START))
        item = (event, await processor.prepare(event))
        assert (await handle_many(letter_engine.sessionmaker, processor, [item]))[0] == [
            "processed"
        ]
        async with letter_engine.sessionmaker() as s:
            stored = await s.get(Event, event.id)
        assert stored is not None
        assert stored.status == EventStatus.processed
        assert stored.processed_at is not None
        assert stored.error is None

    async def test_an_event_stored_earlier_as_processing_is_processed(
        self, letter_engine: Engine
    ) -> None:
        processor = batch_processor(letter_engine)
        event = parse_event(event_body("client.created_by_offer", occurred_at=START))
        async with session_scope(letter_engine.sessionmaker) as s:  # a crashed earlier try
            assert await events_repository.insert_received(s, event, source="queue")
        item = (event, await processor.prepare(event))
        assert (await handle_many(letter_engine.sessionmaker, processor, [item]))[0] == [
            "processed"
        ]
        async with letter_engine.sessionmaker() as s:
            stored = await s.get(Event, event.id)
        assert stored is not None
        assert stored.status == EventStatus.processed
        assert stored.processed_at is not None
        assert len(await letter_engine.letters()) == 1

    async def test_a_failing_batch_writes_nothing(self, letter_engine: Engine) -> None:
        single = letter_engine.processor
        processor = BreaksOneBatch(
            enricher=single.enricher,
            config=single.config,
            clock=single.clock,
            sender=single.sender,
            settings=SettingsCache(letter_engine.sessionmaker, ttl=0),
        )
        event = parse_event(event_body("client.created_by_offer", occurred_at=START))
        processor.bad = event.id
        with pytest.raises(RuntimeError, match="one bad event"):
            await handle_many(
                letter_engine.sessionmaker, processor, [(event, await processor.prepare(event))]
            )
        async with letter_engine.sessionmaker() as s:
            assert await s.get(Event, event.id) is None

    async def test_the_batch_statements_also_run_in_a_sessions_transaction(
        self, letter_engine: Engine
    ) -> None:
        """``driver(session)``: the statements join the session's transaction (BEGIN sent
        first), so the session's rollback and commit decide for them."""
        events = [parse_event(event_body("client.created_by_offer")) for _ in range(2)]
        async with letter_engine.sessionmaker() as s:
            fresh = await events_repository.insert_received_many(s, events, source="queue")
            assert fresh == {e.id for e in events}
            await s.rollback()
        async with session_scope(letter_engine.sessionmaker) as s:
            assert await events_repository.statuses(s, [e.id for e in events]) == {}
            await events_repository.insert_received_many(s, events[:1], source="queue")
            await events_repository.mark_many(s, [events[0].id], EventStatus.failed)
        async with session_scope(letter_engine.sessionmaker) as s:
            assert await events_repository.statuses(s, [e.id for e in events]) == {
                events[0].id: EventStatus.failed
            }

    async def test_two_events_of_one_client_are_refused(self, letter_engine: Engine) -> None:
        processor = batch_processor(letter_engine)
        events = [parse_event(event_body("client.created_by_offer")) for _ in range(2)]
        with pytest.raises(ValueError, match="one event per client"):
            await handle_many(letter_engine.sessionmaker, processor, [(e, None) for e in events])


class BreaksOneBatch(LetterProcessor):
    """Fails every batch holding ``bad`` (and that event alone, permanently)."""

    bad: uuid.UUID

    async def process_many(
        self, session: AsyncSession, items: Any, *, notes: Any = None
    ) -> Any:  # pragma: no cover - signature as the base
        if any(event.id == self.bad for event, _ in items):
            raise RuntimeError("one bad event")
        return await super().process_many(session, items, notes=notes)

    async def process(self, session: AsyncSession, event: AnyEvent) -> Any:
        if event.id == self.bad:
            raise PermanentEventError("bad event")
        return await super().process(session, event)


class TestEventBatcher:
    async def test_concurrent_events_of_one_client_are_handled_in_arrival_order(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        processor = batch_processor(letter_engine)
        batcher = EventBatcher(letter_engine.sessionmaker, processor, window=0.001)
        trigger = event_body(
            "contract.created",
            payload={"contract_id": "ct-1", "payment_type": "prepaid"},
            occurred_at=START,
        )
        cancel = event_body("client.payment_received", occurred_at=START + timedelta(minutes=1))
        other = event_body("client.created_by_offer", client_id="client-2", occurred_at=START)
        upstream.add_client("client-2")
        outcomes = await asyncio.gather(
            batcher.handle(trigger), batcher.handle(cancel), batcher.handle(other)
        )
        assert outcomes == ["processed"] * 3
        reminders = await letter_engine.letters(client_id="client-1")
        assert reminders
        assert {x.cancelled_by_event_id for x in reminders} == {uuid.UUID(cancel["id"])}
        assert len(await letter_engine.letters(client_id="client-2")) == 1

    async def test_a_failing_batch_falls_back_to_one_by_one(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        single = letter_engine.processor
        processor = BreaksOneBatch(
            enricher=single.enricher,
            config=single.config,
            clock=single.clock,
            sender=single.sender,
            settings=SettingsCache(letter_engine.sessionmaker, ttl=0),
        )
        bodies = [
            event_body("client.created_by_offer", client_id=f"c-{n}", occurred_at=START)
            for n in range(3)
        ]
        for n in range(3):
            upstream.add_client(f"c-{n}")
        processor.bad = uuid.UUID(bodies[1]["id"])
        batcher = EventBatcher(letter_engine.sessionmaker, processor, window=0.001)
        outcomes = await asyncio.gather(*(batcher.handle(b) for b in bodies))
        assert outcomes == ["processed", "failed", "processed"]
        async with letter_engine.sessionmaker() as s:
            rows = await s.execute(select(Event.client_id, Event.status))
            assert dict(rows.all()) == {
                "c-0": EventStatus.processed,
                "c-1": EventStatus.failed,
                "c-2": EventStatus.processed,
            }
        assert {x.client_id for x in await letter_engine.letters()} == {"c-0", "c-2"}

    async def test_batches_after_a_failed_one_are_grouped_again(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        single = letter_engine.processor
        processor = BreaksOneBatch(
            enricher=single.enricher,
            config=single.config,
            clock=single.clock,
            sender=single.sender,
            settings=SettingsCache(letter_engine.sessionmaker, ttl=0),
        )
        for n in range(4):
            upstream.add_client(f"c-{n}")
        first = [
            event_body("client.created_by_offer", client_id=f"c-{n}", occurred_at=START)
            for n in range(2)
        ]
        processor.bad = uuid.UUID(first[0]["id"])
        batcher = EventBatcher(letter_engine.sessionmaker, processor, window=0.001)
        assert await asyncio.gather(*(batcher.handle(b) for b in first)) == [
            "failed",
            "processed",
        ]
        later = [
            event_body("client.created_by_offer", client_id=f"c-{n}", occurred_at=START)
            for n in (2, 3)
        ]
        assert await asyncio.gather(*(batcher.handle(b) for b in later)) == ["processed"] * 2
        await batcher.aclose()
        assert {x.client_id for x in await letter_engine.letters()} == {"c-1", "c-2", "c-3"}

    async def test_an_upstream_404_marks_only_that_event_failed(
        self, letter_engine: Engine
    ) -> None:
        processor = batch_processor(letter_engine)
        batcher = EventBatcher(letter_engine.sessionmaker, processor, window=0.001)
        missing = event_body("client.created_by_offer", client_id="nobody", occurred_at=START)
        known = event_body("client.created_by_offer", occurred_at=START)
        outcomes = await asyncio.gather(batcher.handle(missing), batcher.handle(known))
        assert outcomes == ["failed", "processed"]
        assert len(await letter_engine.letters()) == 1


class TestJobsDoNotWaitForTheirSends:
    async def test_a_job_returns_at_commit_while_its_immediate_send_hangs(
        self, letter_engine: Engine, upstream: Upstream
    ) -> None:
        """Decision 0079: the job's outcome is set when its batch commits; the immediate send
        runs after it (a crash there leaves the letter committed, scheduled and due: the drain
        sends it). Closing the batcher waits for the send."""
        from notifier.letters.immediate import ImmediateSends

        release = asyncio.Event()
        started = asyncio.Event()
        real = letter_engine.sender.send_now

        async def hanging(ids: list[int]) -> object:
            started.set()
            await release.wait()
            return await real(ids)

        letter_engine.sender.send_now = hanging  # type: ignore[method-assign]
        processor = batch_processor(letter_engine)
        processor.immediate = ImmediateSends(letter_engine.sender, window=0)
        batcher = EventBatcher(letter_engine.sessionmaker, processor, window=0.001)
        upstream.add_client("c-now")
        body = event_body(
            "client.activated",
            client_id="c-now",
            payload={"payment_type": "prepaid", "service": "taxi"},
        )
        body["occurred_at"] = START.isoformat()
        outcome = await asyncio.wait_for(batcher.handle(body), 5)
        assert outcome == "processed"
        await asyncio.wait_for(started.wait(), 5)  # the send is under way, the job is done
        (letter,) = await letter_engine.letters(letter="ActivateClientNotice")
        assert letter.status.value == "scheduled"
        release.set()
        await batcher.aclose()
        (letter,) = await letter_engine.letters(letter="ActivateClientNotice")
        assert letter.status.value == "sent"
