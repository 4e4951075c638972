"""Send-time re-checks are fetched only where they can change the outcome (decision 0065)."""

from __future__ import annotations

from notifier.letters import repository
from notifier.models import LetterStatus

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, RecordingGateway, Upstream
from tests.notifier.letters.test_scenarios import CONTRACT, at

REMINDER = "FirstRemindPrepaidNotice"  # re-checks its contract before it is sent


async def contract_fetches_of_a_drain(engine: Engine, upstream: Upstream) -> int:
    before = upstream.calls
    await engine.sender.drain(now=at(2, 10))
    return upstream.calls - before


async def test_a_letter_that_can_be_sent_is_rechecked_with_fresh_data(
    letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
) -> None:
    await letter_engine.handle(event_body("contract.created", payload=CONTRACT, occurred_at=START))
    upstream.contracts["ct-1"]["is_paid"] = True  # changed upstream since the letter was planned
    assert await contract_fetches_of_a_drain(letter_engine, upstream) == 1
    [letter] = await letter_engine.letters(letter=REMINDER)
    assert (letter.status, letter.skip_reason) == (LetterStatus.skipped, "contract already paid")
    assert gateway.sent_for(REMINDER) == []


async def test_a_switched_off_letter_is_not_rechecked(
    letter_engine: Engine, upstream: Upstream, gateway: RecordingGateway
) -> None:
    await letter_engine.handle(event_body("contract.created", payload=CONTRACT, occurred_at=START))
    async with letter_engine.sessionmaker() as session, session.begin():
        await repository.upsert_setting(
            session, letter=REMINDER, enabled=False, params={}, updated_by="test"
        )
    assert await contract_fetches_of_a_drain(letter_engine, upstream) == 0
    [letter] = await letter_engine.letters(letter=REMINDER)
    assert (letter.status, letter.skip_reason) == (LetterStatus.skipped, "letter switched off")
    assert gateway.sent_for(REMINDER) == []
