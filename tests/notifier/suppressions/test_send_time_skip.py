"""A suppressed recipient's letter ends ``skipped`` at the drain, never at the gateway."""

from __future__ import annotations

from datetime import timedelta

from notifier.models import LetterStatus, SuppressionReason, SuppressionSource
from notifier.suppressions import repository
from notifier.suppressions.repository import NewSuppression
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway

OFFER = "ThirdRemindOfferNotice"
DUE = START + timedelta(days=7)


async def suppress(
    sessionmaker: async_sessionmaker[AsyncSession],
    address: str,
    scope: str = "*",
    reason: SuppressionReason = SuppressionReason.hard_bounce,
) -> None:
    async with sessionmaker() as s, s.begin():
        await repository.add_many(
            s, [NewSuppression(address, scope, reason, SuppressionSource.operator)]
        )


async def schedule(engine: Engine, client_id: str = "client-1") -> int:
    await engine.handle(
        event_body("client.created_by_offer", client_id=client_id, occurred_at=START)
    )
    [letter] = await engine.letters(letter=OFFER, client_id=client_id)
    return letter.id


class TestSendTimeSkip:
    async def test_a_suppressed_recipient_is_skipped_with_the_reason(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter_id = await schedule(letter_engine)
        [letter] = await letter_engine.letters(id=letter_id)
        await suppress(sessionmaker, letter.recipient.upper())  # addresses compare lower-cased
        report = await letter_engine.sender.drain(now=DUE)
        assert report.skipped == 1
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.skip_reason) == (
            LetterStatus.skipped,
            "suppressed (hard_bounce)",
        )
        assert gateway.sent_for(OFFER) == []
        assert await letter_engine.attempts(letter_id) == []

    async def test_a_scope_of_another_letter_or_channel_does_not_skip(
        self,
        letter_engine: Engine,
        gateway: RecordingGateway,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter_id = await schedule(letter_engine)
        [letter] = await letter_engine.letters(id=letter_id)
        await suppress(sessionmaker, letter.recipient, scope="sms")
        await suppress(sessionmaker, letter.recipient, scope="LowBalanceNotice")
        await letter_engine.sender.drain(now=DUE)
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.status == LetterStatus.sent

    async def test_a_letter_scope_skips_that_letter(
        self, letter_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        letter_id = await schedule(letter_engine)
        [letter] = await letter_engine.letters(id=letter_id)
        await suppress(sessionmaker, letter.recipient, OFFER, SuppressionReason.unsubscribed)
        await letter_engine.sender.drain(now=DUE)
        [letter] = await letter_engine.letters(id=letter_id)
        assert letter.skip_reason == "suppressed (unsubscribed)"

    async def test_one_suppression_query_per_batch(
        self,
        letter_engine: Engine,
        upstream: object,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
    ) -> None:
        for n in range(5):
            upstream.add_client(f"c{n}")  # type: ignore[attr-defined]
            await schedule(letter_engine, f"c{n}")
        await suppress(sessionmaker, "boss@c2.example")
        statements: list[str] = []

        def record(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            report = await letter_engine.sender.drain(now=DUE)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        assert (report.claimed, report.skipped, report.sent) == (5, 1, 4)
        assert sum("notifier.suppressions" in s for s in statements) == report.batches == 1
