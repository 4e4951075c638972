"""The drain's lanes (docs/decisions/0045): several lock -> send -> commit loops side by side."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from notifier.letters import drain_sql
from notifier.letters.drain import BatchReport, DeliveryConfig, LetterSender
from notifier.letters.repository import Claimed
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from sqlalchemy import text

from tests.factories import event_body
from tests.notifier.letters.conftest import GATEWAY, START, Engine, RecordingGateway

DUE = START + timedelta(days=7)
OFFER = "ThirdRemindOfferNotice"


async def schedule_offer_reminders(engine: Engine, upstream: Any, n: int) -> None:
    for i in range(n):
        upstream.add_client(f"c{i}")
        body = event_body("client.created_by_offer", client_id=f"c{i}", occurred_at=START)
        await engine.handle(body)


def configure(sender: LetterSender, **changes: Any) -> None:
    sender.config = dataclasses.replace(sender.config, **changes)


def test_the_default_runs_more_than_one_lane() -> None:
    assert DeliveryConfig().concurrency > 1


async def test_two_lanes_have_two_batches_at_the_gateway_at_once(
    letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 4)
    configure(letter_engine.sender, batch_size=1, concurrency=2)
    in_flight, most = 0, 0
    both = asyncio.Event()

    async def slow_gateway(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 2:
            both.set()
        # a guard against hanging, not a timing: one lane alone never has two calls open
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both.wait(), 5)
        in_flight -= 1
        return gateway.handle(request)

    router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=slow_gateway)
    report = await letter_engine.sender.drain(now=DUE)
    assert most == 2
    assert (report.batches, report.claimed, report.sent) == (4, 4, 4)


async def test_claim_and_prepare_take_turns_while_batches_overlap_at_the_gateway(
    letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 6)
    configure(letter_engine.sender, batch_size=2, concurrency=3)
    preparing, most_preparing, at_gateway, most_at_gateway = 0, 0, 0, 0
    sender = letter_engine.sender
    original_prepare, original_look_up = sender._prepare, sender._look_up
    claims = 0
    another_claimed = asyncio.Event()

    async def look_up(session: Any, claimed: list[Claimed]) -> Any:  # once per locked batch
        nonlocal claims
        claims += 1
        if claims >= 2:
            another_claimed.set()
        return await original_look_up(session, claimed)

    async def prepare(claimed: list[Claimed], lookups: Any, *, now: Any) -> Any:
        nonlocal preparing, most_preparing
        preparing += 1
        most_preparing = max(most_preparing, preparing)
        # without turns a second lane claims and prepares meanwhile; with them it cannot, and
        # this short guard runs out (it bounds the wait, it measures nothing)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(another_claimed.wait(), 0.3)
        try:
            return await original_prepare(claimed, lookups, now=now)
        finally:
            preparing -= 1

    second = asyncio.Event()

    async def slow_gateway(request: httpx.Request) -> httpx.Response:
        nonlocal at_gateway, most_at_gateway
        at_gateway += 1
        most_at_gateway = max(most_at_gateway, at_gateway)
        if at_gateway >= 2:
            second.set()
        with contextlib.suppress(TimeoutError):  # a guard against hanging, not a timing
            await asyncio.wait_for(second.wait(), 5)
        at_gateway -= 1
        return gateway.handle(request)

    sender._prepare = prepare  # type: ignore[method-assign]
    sender._look_up = look_up  # type: ignore[method-assign]
    router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=slow_gateway)
    report = await letter_engine.sender.drain(now=DUE)
    assert (report.batches, report.sent) == (3, 6)
    assert most_preparing == 1
    assert most_at_gateway == 2  # the next batch was prepared while one was at the gateway


async def test_lanes_claim_disjoint_batches_and_send_each_letter_once(
    letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 25)
    configure(letter_engine.sender, batch_size=2, concurrency=4)
    offered: Counter[str] = Counter()
    batches: list[set[int]] = []
    original_send = letter_engine.sender._send

    async def send(session: Any, claimed: list[Claimed], *args: Any, now: Any) -> BatchReport:
        batches.append({c.id for c in claimed})
        await asyncio.sleep(0)  # let the other lanes claim meanwhile
        return await original_send(session, claimed, *args, now=now)

    letter_engine.sender._send = send  # type: ignore[method-assign]

    def counting(request: httpx.Request) -> httpx.Response:
        for item in json.loads(request.content)["items"]:
            offered[item["idempotency_key"]] += 1
        return gateway.handle(request)

    router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=counting)
    report = await letter_engine.sender.drain(now=DUE)
    assert (report.batches, report.claimed, report.sent) == (13, 25, 25)
    assert len(batches) == 13
    assert len(set().union(*batches)) == sum(map(len, batches)) == 25  # no letter in two
    assert len(offered) == 25
    assert set(offered.values()) == {1}
    letters = await letter_engine.letters(letter=OFFER)
    assert {row.status for row in letters} == {LetterStatus.sent}


async def test_max_batches_bounds_all_lanes_together(
    letter_engine: Engine, gateway: RecordingGateway, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 10)
    configure(letter_engine.sender, batch_size=2, concurrency=3)
    report = await letter_engine.sender.drain(now=DUE, max_batches=2)
    assert (report.batches, report.sent) == (2, 4)
    assert len(await letter_engine.letters(letter=OFFER, status=LetterStatus.scheduled)) == 6


async def test_a_failing_lane_stops_the_others_and_its_error_is_raised_as_is(
    letter_engine: Engine, gateway: RecordingGateway, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 6)
    configure(letter_engine.sender, batch_size=1, concurrency=3)
    started = 0
    blocked = asyncio.Event()  # never set: the other lanes wait here until cancelled
    cancelled = 0

    async def send(session: Any, claimed: list[Claimed], *args: Any, now: Any) -> BatchReport:
        nonlocal started, cancelled
        started += 1
        if started == 3:
            raise RuntimeError("database went away")
        try:
            await blocked.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        raise AssertionError("not reached")

    letter_engine.sender._send = send  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="database went away"):
        await asyncio.wait_for(letter_engine.sender.drain(now=DUE), 10)
    assert cancelled == 2
    assert gateway.calls == 0
    # every lane's transaction rolled back: its letters were never claimed for good
    letters = await letter_engine.letters(letter=OFFER)
    assert {row.status for row in letters} == {LetterStatus.scheduled}


def test_the_lane_count_is_a_setting(settings: NotifierSettings) -> None:
    """NOTIFIER_LETTERS_DRAIN_CONCURRENCY reaches the sender's config (default 2)."""
    from notifier.worker import delivery_config

    assert delivery_config(settings).concurrency == 2
    assert (
        delivery_config(settings.model_copy(update={"letters_drain_concurrency": 3})).concurrency
        == 3
    )


class CountingSessions:
    """The sender's session factory, counting the sessions (units of work) it opens."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.opened = 0

    def __call__(self) -> Any:
        self.opened += 1
        return self.factory()


async def test_a_batch_is_locked_looked_up_sent_and_recorded_in_one_transaction(
    letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter, upstream: Any
) -> None:
    """Decision 0103 (after 0083): the claim is the batch's row lock, so the look-ups, the
    gateway call and the record share its transaction; no ``sending`` version is written."""
    await schedule_offer_reminders(letter_engine, upstream, 3)
    configure(letter_engine.sender, batch_size=10, concurrency=1)
    sessions = CountingSessions(letter_engine.sender.sessionmaker)
    letter_engine.sender.sessionmaker = sessions  # type: ignore[assignment]
    report = await letter_engine.sender.drain(now=DUE)
    assert (report.batches, report.sent) == (1, 3)
    # the batch's transaction; then the lock that finds nothing due
    assert sessions.opened == 2


async def test_a_pass_continues_after_its_last_row_and_ends_looking_from_the_front(
    letter_engine: Engine,
    gateway: RecordingGateway,
    router: respx.MockRouter,
    upstream: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 0105: each batch is locked after the pass's last locked row (not from the
    front, over the rows other batches hold); a row passed over because another transaction
    held it is still sent in the same pass, by the scan from the front that ends it."""
    await schedule_offer_reminders(letter_engine, upstream, 5)
    configure(letter_engine.sender, batch_size=2, concurrency=1)
    ids = sorted(row.id for row in await letter_engine.letters(letter=OFFER))
    afters: list[int | None] = []
    original_lock = drain_sql.lock_due

    async def lock_due(session: Any, **kw: Any) -> list[Claimed]:
        afters.append(kw["after"][1] if kw["after"] is not None else None)
        return await original_lock(session, **kw)

    monkeypatch.setattr(drain_sql, "lock_due", lock_due)
    batches: list[list[str]] = []
    holder = letter_engine.sessionmaker()
    # the first letter is held (a cancel's lock) when the pass starts ...
    await holder.execute(
        text("SELECT id FROM notifier.letters WHERE id = :id FOR UPDATE"), {"id": ids[0]}
    )

    async def gateway_call(request: httpx.Request) -> httpx.Response:
        batches.append([i["idempotency_key"] for i in json.loads(request.content)["items"]])
        if len(batches) == 1:
            await holder.rollback()  # ... and let go while the first batch is at the gateway
        return gateway.handle(request)

    router.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=gateway_call)
    try:
        report = await letter_engine.sender.drain(now=DUE)
    finally:
        await holder.close()
    keys = [f"letter-{i}" for i in ids]
    assert batches == [keys[1:3], keys[3:5], keys[:1]]
    # from the front; after the 3rd and the 5th letter (nothing more); from the front, twice
    assert afters == [None, ids[2], ids[4], None, None]
    assert (report.batches, report.sent) == (3, 5)
