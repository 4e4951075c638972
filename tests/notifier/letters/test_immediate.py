"""Coalesced immediate sends: concurrent events' due letters go out in one gateway call."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from notifier.letters.immediate import ImmediateSends
from notifier.models import LetterStatus

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream

ACTIVATED = {"payment_type": "prepaid", "service": "taxi"}


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
        statuses = {x.status for x in await letter_engine.letters(letter="ActivateClientNotice")}
        assert statuses == {LetterStatus.sent}

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

    async def test_batches_are_cut_at_max_batch(
        self, letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
    ) -> None:
        ids = await due_letters(letter_engine, upstream, 3)
        await ImmediateSends(letter_engine.sender, window=0, max_batch=2).send(ids)
        assert gateway.calls == 2
        assert len(gateway.sent) == 3
