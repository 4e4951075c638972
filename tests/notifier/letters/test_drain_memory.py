"""What a drain keeps in memory and how it reads letters (decisions 0058, 0059)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx
from notifier.letters import drain as drain_module
from notifier.letters import drain_sql
from notifier.letters.drain import LetterSender
from notifier.letters.repository import Claimed
from notifier_common.db import session_scope
from sqlalchemy import text

from tests.notifier.letters.conftest import Engine, RecordingGateway
from tests.notifier.letters.test_drain_pipeline import DUE, OFFER, schedule_offer_reminders

BIG = 2**70


async def test_a_claimed_context_is_the_stored_json_with_big_integers_intact(
    letter_engine: Engine, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 2)
    async with session_scope(letter_engine.sessionmaker) as session:
        await session.execute(
            text(
                "UPDATE notifier.letters SET context = context || CAST(:extra AS jsonb)"
                " WHERE id = (SELECT min(id) FROM notifier.letters)"
            ),
            {"extra": json.dumps({"big": BIG, "digits": "1" * 25})},
        )
        rows = await session.execute(text("SELECT id, context FROM notifier.letters"))
        stored = {row[0]: row[1] for row in rows}
    async with session_scope(letter_engine.sessionmaker) as session:
        claimed = await drain_sql.lock_due(session, now=DUE, limit=10)
    assert {c.id: c.context for c in claimed} == stored
    [first] = [c for c in claimed if c.id == min(stored)]
    assert first.context["big"] == BIG
    assert isinstance(first.context["big"], int)
    assert all(isinstance(c, Claimed) and c.letter == OFFER for c in claimed)


async def test_the_send_holds_the_rows_without_their_contexts(
    letter_engine: Engine, gateway: RecordingGateway, router: respx.MockRouter, upstream: Any
) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 3)
    sender: LetterSender = letter_engine.sender
    seen: list[Claimed] = []
    original = sender._send

    async def send(session: Any, claimed: Any, *args: Any, **kwargs: Any) -> Any:
        seen.extend(claimed)
        return await original(session, claimed, *args, **kwargs)

    sender._send = send  # type: ignore[method-assign]
    report = await sender.drain(now=DUE)
    assert report.sent == 3
    assert len(gateway.sent_for(OFFER)) == 3
    assert len(seen) == 3
    assert all(c.context == {} for c in seen)
    # the rendered letters went out with their contexts all the same
    assert all(item["message"]["html"] for item in gateway.sent_for(OFFER))


async def test_a_drain_hands_the_freed_heap_back_when_it_is_done(
    letter_engine: Engine,
    gateway: RecordingGateway,
    router: respx.MockRouter,
    upstream: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert drain_module._TRIM is not None  # glibc's malloc_trim is found on this platform
    trims: list[int] = []
    monkeypatch.setattr(drain_module, "_TRIM", lambda: trims.append(1))
    await schedule_offer_reminders(letter_engine, upstream, 2)
    report = await letter_engine.sender.drain(now=DUE)
    assert report.sent == 2
    assert trims == [1]  # once, after the lanes, not per batch


async def test_lock_due_ids_builds_the_same_rows(letter_engine: Engine, upstream: Any) -> None:
    await schedule_offer_reminders(letter_engine, upstream, 2)
    async with session_scope(letter_engine.sessionmaker) as session:
        ids = list((await session.execute(text("SELECT id FROM notifier.letters"))).scalars())
        claimed = await drain_sql.lock_due_ids(session, ids, now=DUE)
    assert sorted(c.id for c in claimed) == sorted(ids)
    assert all(c.context["client"] and c.attempts == 0 for c in claimed)
