"""Every event's letter decisions are logged as ONE structured line (``letters.planned``): the
reasons a letter was or was not planned, what was cancelled and created."""

from __future__ import annotations

from notifier.events.batching import handle_many
from notifier.letters.processor import LetterProcessor
from notifier.letters.settings_service import SettingsCache
from notifier_common.events import parse_event
from structlog.testing import capture_logs

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine


async def test_one_line_per_event_with_every_decision(letter_engine: Engine) -> None:
    body = event_body("client.created_by_offer", occurred_at=START)
    with capture_logs() as logs:
        assert await letter_engine.handle(body) == "processed"
    planned = [entry for entry in logs if entry["event"] == "letters.planned"]
    assert len(planned) == 1
    line = planned[0]
    assert line["event_id"] == body["id"]
    assert line["event_type"] == "client.created_by_offer"
    assert {d["decision"] for d in line["decisions"]} == {"planned"}
    assert line["created"]
    assert line["cancelled"] == []
    assert not [e for e in logs if e["event"] in ("letters.decision", "letters.created")]


async def test_the_group_commit_logs_one_line_per_event_with_its_decisions(
    letter_engine: Engine,
) -> None:
    """The worker's batches (decision 0071): ``events.processed`` carries the letter facts."""
    processor = LetterProcessor(
        enricher=letter_engine.processor.enricher,
        config=letter_engine.processor.config,
        clock=letter_engine.processor.clock,
        sender=None,
        settings=SettingsCache(letter_engine.sessionmaker, ttl=0),
    )
    body = event_body("client.created_by_offer", occurred_at=START)
    event = parse_event(body)
    item = (event, await processor.prepare(event))
    with capture_logs() as logs:
        outcomes, _ = await handle_many(letter_engine.sessionmaker, processor, [item])
    assert outcomes == ["processed"]
    assert [e["event"] for e in logs] == ["events.processed"]
    line = logs[0]
    assert line["event_id"] == body["id"]
    assert line["event_type"] == "client.created_by_offer"
    assert {d["decision"] for d in line["decisions"]} == {"planned"}
    assert line["created"]
    assert line["cancelled"] == []
