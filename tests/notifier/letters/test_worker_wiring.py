"""The arq worker runs the letter engine: event jobs and the per-minute drain cron."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import respx
from arq.connections import RedisSettings, create_pool
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from notifier.worker import create_worker, drain_due_letters, shutdown, startup, worker_settings
from notifier_common.events import parse_event
from notifier_common.publisher import publish

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine, FakeClock, RecordingGateway


def test_the_drain_is_a_unique_cron_every_minute(settings: NotifierSettings) -> None:
    [job] = [j for j in worker_settings(settings)["cron_jobs"] if j.name == "drain_due_letters"]
    assert job.unique is True
    assert job.second == 0  # every minute, on the minute
    assert job.minute is None


async def test_a_burst_worker_sends_the_immediate_letter_of_a_published_event(
    settings: NotifierSettings,
    router: respx.MockRouter,
    gateway: RecordingGateway,
    letter_engine: Engine,
    clock: FakeClock,
) -> None:
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        await publish(
            redis,
            parse_event(event_body("client.unblocked", occurred_at=START)),
            queue_name=settings.queue_name,
        )
    finally:
        await redis.aclose()
    worker = create_worker(
        settings, burst=True, poll_delay=0.01, ctx={"settings": settings, "clock": clock}
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    [letter] = await letter_engine.letters()
    assert letter.status == LetterStatus.sent
    assert len(gateway.sent_for("FinancialUnblockNotice")) == 1


async def test_the_cron_job_drains_what_is_due_by_the_injected_clock(
    settings: NotifierSettings,
    router: respx.MockRouter,
    gateway: RecordingGateway,
    letter_engine: Engine,
    clock: FakeClock,
) -> None:
    await letter_engine.handle(event_body("client.created_by_offer", occurred_at=START))
    ctx: dict[str, Any] = {"settings": settings, "clock": clock}
    await startup(ctx)
    try:
        assert (await drain_due_letters(ctx))["sent"] == 0
        clock.advance(timedelta(days=7))
        assert (await drain_due_letters(ctx))["sent"] == 1
    finally:
        await shutdown(ctx)
    assert len(gateway.sent_for("ThirdRemindOfferNotice")) == 1
