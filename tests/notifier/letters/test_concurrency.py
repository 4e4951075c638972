"""Two drains with separate engines (= two worker processes' pools) over 5,000 due letters."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from notifier.letters import repository
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from notifier_common.db import create_engine, create_sessionmaker, session_scope
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, FakeClock, RecordingGateway, build_engine

N = 5_000


async def seed_due_letters(engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await engine.handle(event_body("client.created_by_offer", occurred_at=START))
    [template] = await engine.letters()
    rows = [
        {
            "event_id": None,
            "letter": template.letter,
            "client_id": template.client_id,
            "contract_id": None,
            "channel": "email",
            "recipient": f"user{n}@client-1.example",
            "locale": template.locale,
            "context": template.context,
            "status": LetterStatus.scheduled,
            "triggered_at": START,
            "send_at": START + timedelta(seconds=n % 600),
            "expires_at": None,
            "origin": "manual",
        }
        for n in range(N - 1)
    ]
    async with session_scope(sessionmaker) as s:
        for start in range(0, len(rows), 1000):
            await repository.insert_letters(s, rows[start : start + 1000])


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_two_workers_draining_5000_letters_send_each_exactly_once(
    settings: NotifierSettings,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    http: httpx.AsyncClient,
    router: respx.MockRouter,
    gateway: RecordingGateway,
    letter_engine: Engine,
) -> None:
    await seed_due_letters(letter_engine, sessionmaker)
    received: Counter[str] = Counter()
    original = gateway.handle

    def counting(request: httpx.Request) -> httpx.Response:
        import json

        for item in json.loads(request.content)["items"]:
            received[item["idempotency_key"]] += 1
        return original(request)

    router.post("http://gateway.test/v1/messages:batch").mock(side_effect=counting)
    engines = [create_engine(database_url, pool_size=4) for _ in range(2)]
    try:
        senders = [
            build_engine(settings, create_sessionmaker(e), clock, http).sender for e in engines
        ]
        for sender in senders:
            sender.config = type(sender.config)(**{**sender.config.__dict__, "batch_size": 250})
        started = time.perf_counter()
        reports = await asyncio.gather(
            *(s.drain(now=START + timedelta(days=7, hours=1)) for s in senders)
        )
        elapsed = time.perf_counter() - started
    finally:
        for e in engines:
            await e.dispose()
    assert len(received) == N
    assert set(received.values()) == {1}  # no letter was even offered twice
    assert len(gateway.sent) == N
    assert all(r.claimed > 0 for r in reports), reports  # both drained side by side
    assert sum(r.sent for r in reports) == N
    async with sessionmaker() as s:
        statuses = dict(
            (await s.execute(select(_status(), func.count()).group_by(_status()))).all()
        )
    assert statuses == {LetterStatus.sent: N}
    print(f"drained {N} letters with 2 drains in {elapsed:.2f}s ({N / elapsed:.0f}/s)")


def _status() -> Any:
    from notifier.models import Letter

    return Letter.status
