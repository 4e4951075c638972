import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.utils import timestamp_ms
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


def hanging_job() -> Any:
    """An arq function named handle_event that runs until cancelled."""
    from arq import func as arq_func

    async def hang(ctx: dict[str, object], body: object) -> None:
        await asyncio.Event().wait()

    return arq_func(hang, name="handle_event")


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

    async def test_free_slots_are_claimed_in_one_call_with_arqs_checks(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        """Queued ids are started together; an id running elsewhere, one re-enqueued for later
        and one no longer queued are left alone, and their slots are given back."""
        q = settings.queue_name
        for name in ("a", "b", "c", "elsewhere", "later"):
            await redis.enqueue_job("handle_event", {}, _job_id=name, _queue_name=q)
        await redis.set("arq:in-progress:elsewhere", b"1")
        await redis.zadd(q, {"later": 10**15})
        w = create_worker(
            settings,
            burst=True,
            redis_pool=redis,
            max_jobs=10,
            functions=[hanging_job()],
            on_shutdown=None,
        )

        def no_pipelines(*a: object, **k: object) -> None:
            raise AssertionError("arq's per-job WATCH/MULTI pipeline was used")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ArqRedis, "pipeline", no_pipelines)
            await w.start_jobs([b"a", b"b", b"elsewhere", b"gone", b"later", b"c"])
        try:
            assert sorted(w.tasks) == ["a", "b", "c"]
            assert w.job_counter == 3
            assert (
                w.sem._value == 11 - 3
            )  # arq's semaphore holds max_jobs + 1; 3 ids gave theirs back
            for name in ("a", "b", "c"):
                ttl = await redis.pttl(f"arq:in-progress:{name}")
                assert 0 < ttl <= w.in_progress_timeout_s * 1000
            assert await redis.pttl("arq:in-progress:elsewhere") == -1
            assert not await redis.exists("arq:in-progress:later", "arq:in-progress:gone")
        finally:
            for t in w.tasks.values():
                t.cancel()
            await asyncio.gather(*w.tasks.values(), return_exceptions=True)
            await w.close()

    async def test_no_more_jobs_are_claimed_than_there_are_free_slots(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        q = settings.queue_name
        for name in ("a", "b", "c"):
            await redis.enqueue_job("handle_event", {}, _job_id=name, _queue_name=q)
        w = create_worker(
            settings,
            burst=True,
            redis_pool=redis,
            max_jobs=2,
            functions=[hanging_job()],
            on_shutdown=None,
        )
        try:
            await w.start_jobs([b"a", b"b", b"c"])  # returns when full, as arq's loop does
            assert sorted(w.tasks) == ["a", "b"]
            assert w.job_counter == 2
            assert not await redis.exists("arq:in-progress:c")
            assert await redis.zscore(q, "c")
        finally:
            for t in w.tasks.values():
                t.cancel()
            await asyncio.gather(*w.tasks.values(), return_exceptions=True)
            await w.close()

    async def test_a_burst_worker_runs_every_job_once_with_retries_counted(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Jobs claimed together still go through arq's run_job: job_try, Retry, results."""
        tries: dict[str, list[int]] = {}

        async def flaky(ctx: dict[str, object], body: object) -> str:
            job_id = str(ctx["job_id"])
            tries.setdefault(job_id, []).append(int(ctx["job_try"]))  # type: ignore[call-overload]
            if job_id.endswith("0") and ctx["job_try"] == 1:
                from arq import Retry

                raise Retry(defer=0.01)
            return "ok"

        from arq import func as arq_func

        q = settings.queue_name
        for i in range(30):
            await redis.enqueue_job("handle_event", {}, _job_id=f"j{i}", _queue_name=q)
        w = create_worker(
            settings,
            burst=True,
            poll_delay=0.01,
            redis_pool=redis,
            functions=[arq_func(flaky, name="handle_event")],
            cron_jobs=[],
        )
        try:
            await w.main()
        finally:
            await w.close()
        assert sorted(tries) == sorted(f"j{i}" for i in range(30))
        for job_id, seen in tries.items():
            assert seen == ([1, 2] if job_id.endswith("0") else [1])
        assert w.jobs_complete == 30
        assert w.jobs_retried == 3
        assert w.jobs_failed == 0
        assert await redis.zcard(q) == 0
        assert await redis.exists("arq:result:j0")

    async def test_jobs_finishing_together_share_one_finish_transaction(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        """Decision 0077: jobs that complete in the same loop iteration (a group-commit batch)
        are finished in one MULTI/EXEC, with arq's per-job effects: queue entry, job, retry and
        in-progress keys gone, result kept; a retried job is re-scored, not removed."""
        release = asyncio.Event()

        async def together(ctx: dict[str, object], body: object) -> str:
            await release.wait()
            if ctx["job_id"] == "r" and ctx["job_try"] == 1:
                from arq import Retry

                raise Retry(defer=60)
            return f"done {ctx['job_id']}"

        from arq import func as arq_func

        q = settings.queue_name
        ids = [f"t{i}" for i in range(20)] + ["r"]
        for job_id in ids:
            await redis.enqueue_job("handle_event", {}, _job_id=job_id, _queue_name=q)
        w = create_worker(
            settings,
            burst=True,
            redis_pool=redis,
            functions=[arq_func(together, name="handle_event")],
            cron_jobs=[],
            on_shutdown=None,
        )
        real_pipeline = ArqRedis.pipeline
        pipelines: list[bool] = []

        def counted(self: ArqRedis, transaction: bool = True, shard_hint: str | None = None) -> Any:
            pipelines.append(transaction)
            return real_pipeline(self, transaction, shard_hint)

        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ArqRedis, "pipeline", counted)
                await w.start_jobs([i.encode() for i in ids])
                for _ in range(50):  # every job reaches the event
                    await asyncio.sleep(0.01)
                release.set()
                await asyncio.gather(*w.tasks.values())
        finally:
            await w.close()
        assert w.finish_flushes == 1
        # arq's per-job start pipeline was answered by the claim: the finish is the only one
        assert pipelines == [True]
        assert await redis.get("arq:retry:r") == b"1"
        assert await redis.zrange(q, 0, -1) == [b"r"]  # re-scored for its retry
        assert await redis.zscore(q, "r") > timestamp_ms() + 50_000
        for job_id in ids[:-1]:
            assert not await redis.exists(
                f"arq:job:{job_id}", f"arq:retry:{job_id}", f"arq:in-progress:{job_id}"
            )
            assert await redis.exists(f"arq:result:{job_id}")
        assert await redis.exists("arq:job:r", "arq:retry:r") == 2
        assert not await redis.exists("arq:result:r")

    async def test_an_aborted_job_is_not_run_when_aborts_are_allowed(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        """With ``allow_abort_jobs`` the claim also takes the job out of arq's abort set, and
        arq's ``run_job`` fails it before it starts, as it would have itself."""
        ran: list[str] = []

        async def job(ctx: dict[str, object], body: object) -> str:
            ran.append(str(ctx["job_id"]))
            return "ran"

        from arq import func as arq_func
        from arq.constants import abort_jobs_ss
        from arq.jobs import Job

        q = settings.queue_name
        for job_id in ("keep", "drop"):
            await redis.enqueue_job("handle_event", {}, _job_id=job_id, _queue_name=q)
        await redis.zadd(abort_jobs_ss, {"drop": timestamp_ms()})
        w = create_worker(
            settings,
            burst=True,
            redis_pool=redis,
            allow_abort_jobs=True,
            functions=[arq_func(job, name="handle_event")],
            cron_jobs=[],
            on_shutdown=None,
        )
        try:
            await w.start_jobs([b"keep", b"drop"])
            await asyncio.gather(*w.tasks.values())
        finally:
            await w.close()
        assert ran == ["keep"]
        assert await redis.zscore(abort_jobs_ss, "drop") is None
        dropped = await Job("drop", redis, _queue_name=q).result_info()
        assert dropped is not None
        assert not dropped.success
        kept = await Job("keep", redis, _queue_name=q).result_info()
        assert kept is not None
        assert kept.success
        assert kept.job_try == 1

    async def test_a_failed_finish_transaction_reaches_every_job_of_it(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        w = create_worker(settings, burst=True, redis_pool=redis, cron_jobs=[], on_shutdown=None)
        await redis.set(settings.queue_name, "not a sorted set")  # ZREM on it fails in EXEC
        try:
            results = await asyncio.gather(
                *(w.finish_job(f"x{i}", True, None, None, False, None, None) for i in range(3)),
                return_exceptions=True,
            )
        finally:
            await redis.delete(settings.queue_name)
            await w.close()
        assert w.finish_flushes == 1
        assert all(isinstance(r, Exception) for r in results), results

    async def test_startup_drops_arqs_start_and_finish_lines_of_event_jobs_only(
        self, settings: NotifierSettings
    ) -> None:
        import logging

        class Keep(logging.Handler):
            def __init__(self) -> None:
                super().__init__(logging.INFO)
                self.records: list[logging.LogRecord] = []

            def emit(self, record: logging.LogRecord) -> None:
                self.records.append(record)

        ctx: dict[str, object] = {"settings": settings.model_copy(update={"log_level": "INFO"})}
        await worker.startup(ctx)
        arq_log = logging.getLogger("arq.worker")
        kept = Keep()
        arq_log.addHandler(kept)
        try:
            arq_log.info("%6.2fs \u2192 %s(%s)%s", 0.1, "e1:handle_event", "body", "")
            arq_log.info("%6.2fs \u2190 %s \u25cf %s", 0.1, "e1:handle_event", "processed")
            arq_log.info("%6.2fs \u21bb %s retrying job in %0.2fs", 0.1, "e2:handle_event", 1.0)
            arq_log.info("%6.2fs \u2190 %s \u25cf %s", 0.1, "drain_due_letters", "{}")
            arq_log.info("%6.2fs \u2192 %s(%s)%s", 0.1, "s1:send_letters", "[1]", "")
            logged = [r.getMessage() for r in kept.records]
            assert not any("e1:handle_event" in m for m in logged)
            assert any("e2:handle_event retrying" in m for m in logged)
            assert any("drain_due_letters" in m for m in logged)
            assert any("s1:send_letters" in m for m in logged)
        finally:
            arq_log.removeHandler(kept)
            await worker.shutdown(ctx)

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

    async def test_the_worker_s_transactions_are_bounded_by_the_lease_setting(
        self, settings: NotifierSettings
    ) -> None:
        """Decision 0103: a drain batch's claim is its row lock, held by its transaction; a
        hung worker's is ended by the server after NOTIFIER_LETTERS_LEASE_SECONDS."""
        from sqlalchemy import text

        ctx: dict[str, object] = {
            "settings": settings.model_copy(update={"letters_lease_seconds": 45})
        }
        await worker.startup(ctx)
        try:
            async with ctx["engine"].connect() as conn:  # type: ignore[attr-defined]
                bound = await conn.scalar(text("SHOW idle_in_transaction_session_timeout"))
            assert bound == "45s"
        finally:
            await worker.shutdown(ctx)

    def test_a_bound_shorter_than_a_gateway_call_is_refused(self) -> None:
        from notifier.settings import NotifierSettings
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match="must exceed NOTIFIER_GATEWAY_TIMEOUT"):
            NotifierSettings(letters_lease_seconds=30, gateway_timeout=30.0)
        assert NotifierSettings(letters_lease_seconds=31, gateway_timeout=30.0)

    async def test_startup_freezes_its_objects_and_shutdown_restores_the_collector(
        self, settings: NotifierSettings
    ) -> None:
        """Decision 0080: a full collection no longer walks what start-up built (70-90 ms per
        full collection unfrozen, every event in flight waited); decision 0102: the young
        generation is collected every 10,000 allocations, the other thresholds stay CPython's;
        the process's own collector settings come back on shutdown."""
        import gc

        before = gc.get_threshold()
        assert gc.get_freeze_count() == 0
        ctx: dict[str, object] = {"settings": settings}
        await worker.startup(ctx)
        try:
            assert gc.get_freeze_count() > 10_000
            assert gc.get_threshold() == (10_000, *before[1:])
        finally:
            await worker.shutdown(ctx)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before


def test_use_uvloop_makes_the_next_worker_run_on_uvloop() -> None:
    """``notifier worker`` calls ``use_uvloop()`` before building arq's Worker, which takes
    ``asyncio.get_event_loop()`` at construction (decision 0075). A subprocess: the policy is
    process-wide and would leak into the other tests."""
    import subprocess
    import sys

    code = (
        "import uvloop\n"
        "from notifier.worker import create_worker, use_uvloop\n"
        "use_uvloop()\n"
        "w = create_worker()\n"
        "assert isinstance(w.loop, uvloop.Loop), type(w.loop)\n"
        "print('uvloop')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "uvloop"
