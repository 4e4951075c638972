import asyncio
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from notifier import worker
from notifier.events import service
from notifier.events.processing import (
    AfterCommit,
    NoLetters,
    PermanentEventError,
    TransientEventError,
)
from notifier.models import Event, EventStatus
from notifier.settings import NotifierSettings
from notifier.worker import create_worker
from notifier_common.events import AnyEvent, parse_event
from notifier_common.publisher import publish, publish_many
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body


@pytest.fixture
async def redis(settings: NotifierSettings) -> ArqRedis:
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture(autouse=True)
def _store_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about intake and the worker loop, not letters (tests/notifier/letters)."""
    monkeypatch.setattr(worker, "build_processor", lambda ctx: NoLetters())


async def run_burst(settings: NotifierSettings) -> None:
    worker = create_worker(settings, burst=True, poll_delay=0.01)
    try:
        await worker.main()
    finally:
        await worker.close()


async def events_by_status(sm: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sm() as s:
        rows = await s.execute(select(Event.status, func.count()).group_by(Event.status))
        return {status.value: n for status, n in rows.all()}


class TestPublishAndWorker:
    async def test_burst_worker_stores_published_events_as_processed(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        events = [parse_event(event_body()) for _ in range(5)]
        assert await publish_many(redis, events, queue_name=settings.queue_name) == [True] * 5
        await run_burst(settings)
        assert await events_by_status(sessionmaker) == {"processed": 5}

    async def test_publishing_the_same_event_twice_stores_it_once(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        event = parse_event(event_body())
        assert await publish(redis, event, queue_name=settings.queue_name) is True
        assert await publish(redis, event, queue_name=settings.queue_name) is False
        await run_burst(settings)
        # while arq keeps the job's result, a re-publish collapses in Redis ...
        assert await publish(redis, event, queue_name=settings.queue_name) is False
        # ... and once it expired, the re-run is a no-op in the database
        await redis.delete(f"arq:result:event:{event.id}")
        assert await publish(redis, event, queue_name=settings.queue_name) is True
        await run_burst(settings)
        assert await events_by_status(sessionmaker) == {"processed": 1}

    async def test_fifty_concurrent_publishes_of_one_id_store_once(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        event = parse_event(event_body())
        fresh = await asyncio.gather(
            *(publish(redis, event, queue_name=settings.queue_name) for _ in range(50))
        )
        assert sum(fresh) == 1
        await run_burst(settings)
        assert await events_by_status(sessionmaker) == {"processed": 1}

    async def test_invalid_job_is_stored_rejected_and_the_next_job_still_runs(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await redis.enqueue_job(
            "handle_event",
            {"id": "nope", "type": "client.balance_changed"},
            _queue_name=settings.queue_name,
        )
        await redis.enqueue_job(
            "handle_event", "not even an object", _queue_name=settings.queue_name
        )
        await publish(redis, parse_event(event_body()), queue_name=settings.queue_name)
        await run_burst(settings)
        assert await events_by_status(sessionmaker) == {"processed": 1, "rejected": 2}
        async with sessionmaker() as s:
            rejected = (
                (await s.execute(select(Event).where(Event.status == EventStatus.rejected)))
                .scalars()
                .all()
            )
        errors = {e["loc"] for r in rejected for e in r.error}
        assert "id" in errors
        assert "occurred_at" in errors


class FailingProcessor:
    def __init__(self, exc: Exception, *, times: int = 1) -> None:
        self.exc, self.times, self.calls = exc, times, 0

    async def process(self, session: AsyncSession, event: AnyEvent) -> list[AfterCommit]:
        self.calls += 1
        if self.calls <= self.times:
            raise self.exc
        return []


class TestHandleEvent:
    async def test_permanent_error_marks_the_event_failed_with_the_reason(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = event_body()
        outcome = await service.handle_event(
            sessionmaker, FailingProcessor(PermanentEventError("client 404")), body
        )
        assert outcome == "failed"
        async with sessionmaker() as s:
            row = await s.get(Event, uuid.UUID(body["id"]))
        assert row is not None
        assert row.status == EventStatus.failed
        assert row.error == {"message": "client 404"}

    async def test_transient_error_rolls_back_and_a_retry_processes_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        body = event_body()
        processor = FailingProcessor(TransientEventError("upstream 503"))
        with pytest.raises(TransientEventError):
            await service.handle_event(sessionmaker, processor, body)
        assert await events_by_status(sessionmaker) == {}
        assert await service.handle_event(sessionmaker, processor, body) == "processed"
        assert await service.handle_event(sessionmaker, processor, body) == "duplicate"
        assert processor.calls == 2

    async def test_after_commit_actions_run_after_the_row_is_visible(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        seen: list[EventStatus | None] = []
        body = event_body()

        async def check() -> None:
            async with sessionmaker() as s:
                row = await s.get(Event, uuid.UUID(body["id"]))
                seen.append(row.status if row else None)

        class Proc:
            async def process(self, session: AsyncSession, event: AnyEvent) -> list[AfterCommit]:
                return [check]

        await service.handle_event(sessionmaker, Proc(), body)
        assert seen == [EventStatus.processed]


class TestApiToWorker:
    async def test_an_event_posted_to_the_api_is_processed_by_a_real_worker(
        self,
        client: httpx.AsyncClient,
        make_token: Callable[..., Awaitable[str]],
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        headers = {"Authorization": f"Bearer {await make_token('events:write', 'letters:read')}"}
        body = event_body(payload={"old_balance": 1000, "new_balance": "50.5"})
        r = await client.post("/v1/events", json={"events": [body]}, headers=headers)
        assert r.json()["results"][0]["status"] == "queued"
        await run_burst(settings)
        shown = (await client.get(f"/v1/events/{body['id']}", headers=headers)).json()
        assert shown["status"] == "processed"
        assert shown["body"]["payload"] == {
            "contract_id": None,
            "old_balance": "1000",
            "new_balance": "50.5",
            "currency": "RUB",
        }


class TestNotifierWorker:
    async def test_ids_of_jobs_running_here_are_skipped_without_asking_redis(
        self, settings: NotifierSettings
    ) -> None:
        w = create_worker(settings, burst=True)
        running = asyncio.get_running_loop().create_future()
        w.tasks["event:x"] = asyncio.ensure_future(running)
        try:
            # no Redis pool exists yet: any check in Redis would fail
            await w.start_jobs([b"event:x"])
            assert w.job_counter == 0
            assert list(w.tasks) == ["event:x"]
        finally:
            running.cancel()
            await w.close()

    async def test_startup_silences_httpx_request_lines_at_info(
        self, settings: NotifierSettings
    ) -> None:
        import logging

        logging.getLogger("httpx").setLevel(logging.NOTSET)
        ctx: dict[str, object] = {"settings": settings.model_copy(update={"log_level": "INFO"})}
        await worker.startup(ctx)
        try:
            assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
            assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        finally:
            await worker.shutdown(ctx)
