"""An event whose last ``handle_event`` try fails transiently is stored ``failed`` (decision
0093): listed by the API, replayable with ``--force``, never dropped by arq with nothing stored.

Real PostgreSQL, Redis, arq worker and letter engine; the upstream and the gateway are respx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import Job
from notifier import worker
from notifier.enrichment import EnrichmentClient
from notifier.models import Event, EventStatus
from notifier.operator import replay
from notifier.settings import NotifierSettings
from notifier_common.db import driver
from notifier_common.events import parse_event
from notifier_common.publisher import job_id_for, publish
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import (
    GATEWAY,
    START,
    UPSTREAM,
    FakeClock,
    RecordingGateway,
    Upstream,
)

LETTER = "FinancialUnblockNotice"  # client.unblocked -> sent at once, needs the client profile


@dataclass
class HangingUpstream(Upstream):
    """``Upstream``, and with ``hang`` set every call waits until it is cancelled."""

    hang: bool = False

    def install(self, router: respx.MockRouter) -> None:
        router.route(url__startswith=UPSTREAM).mock(side_effect=self._maybe_hang)
        super().install(router)

    async def _maybe_hang(self, request: httpx.Request) -> None:
        if self.hang:
            await asyncio.Event().wait()
        return None  # no match: the routes of ``Upstream`` answer


@pytest.fixture
def upstream() -> HangingUpstream:
    up = HangingUpstream()
    up.add_client()
    return up


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def router(upstream: HangingUpstream, gateway: RecordingGateway) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        upstream.install(mock)
        mock.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=gateway.handle)
        yield mock


async def _no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def enrichment(router: respx.MockRouter) -> AsyncIterator[EnrichmentClient]:
    """The upstream client without its in-process backoff sleeps or cache."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield EnrichmentClient(
            http, clients_url=UPSTREAM, billing_url=UPSTREAM, cache_ttl=0, sleep=_no_sleep
        )


@pytest.fixture
def base_ctx(enrichment: EnrichmentClient) -> dict[str, Any]:
    return {"clock": FakeClock(), "enrichment": enrichment}


@pytest.fixture(params=[True, False], ids=["group-commit", "one-by-one"])
async def ctx(
    request: pytest.FixtureRequest, settings: NotifierSettings, base_ctx: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """A started worker's ctx (the letter engine), with and without the group commit."""
    ctx = {
        **base_ctx,
        "settings": settings.model_copy(update={"worker_group_commit": request.param}),
    }
    await worker.startup(ctx)
    try:
        yield ctx
    finally:
        await worker.shutdown(ctx)


def unblocked() -> dict[str, Any]:
    return event_body("client.unblocked", occurred_at=START)


async def stored(sm: async_sessionmaker[AsyncSession], event_id: Any) -> list[Event]:
    async with sm() as s:
        rows = await s.execute(select(Event).where(Event.id == uuid.UUID(str(event_id))))
        return list(rows.scalars())


async def event_count(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(Event))).scalar_one())


async def run_burst(settings: NotifierSettings, ctx: dict[str, Any], **overrides: Any) -> None:
    w = worker.create_worker(
        settings, burst=True, poll_delay=0.01, ctx={"settings": settings, **ctx}, **overrides
    )
    try:
        await w.main()
    finally:
        await w.close()


class ConnectionKiller:
    """The letter engine, whose database connection the server ends under its first statement
    (as a restart would): asyncpg raises its own error, not SQLAlchemy's, for a statement run
    on the driver (decision 0107)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def prepare(self, event: Any) -> Any:
        return await self.inner.prepare(event)

    async def process(self, session: Any, event: Any) -> Any:
        await self._die(session)

    async def process_many(self, session: Any, items: Any, *, notes: Any = None) -> Any:
        await self._die(session)

    @staticmethod
    async def _die(db: Any) -> None:
        await (await driver(db)).execute("SELECT pg_terminate_backend(pg_backend_pid())")


class TestHandleEventTries:
    async def test_a_connection_dropped_under_a_driver_statement_is_retried(
        self, ctx: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """asyncpg's own connection errors are transient like SQLAlchemy's: the job is retried,
        not failed by arq with the event lost."""
        ctx["processor"] = ConnectionKiller(ctx["processor"])
        if ctx["batcher"] is not None:
            ctx["batcher"] = worker.build_batcher(ctx)
        with pytest.raises(Retry):
            await worker.handle_event({**ctx, "job_try": 1}, unblocked())
        assert await event_count(sessionmaker) == 0

    async def test_a_try_before_the_last_is_retried_and_stores_nothing(
        self,
        ctx: dict[str, Any],
        upstream: HangingUpstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        upstream.fail_with = 503
        body = unblocked()
        max_tries = ctx["settings"].worker_max_tries
        for job_try in (1, max_tries - 1):
            with pytest.raises(Retry):
                await worker.handle_event({**ctx, "job_try": job_try}, body)
        assert await event_count(sessionmaker) == 0

    async def test_the_last_try_failing_transiently_stores_the_event_failed(
        self,
        ctx: dict[str, Any],
        upstream: HangingUpstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        upstream.fail_with = 503
        body = unblocked()
        max_tries = ctx["settings"].worker_max_tries
        # returns (arq finishes the job: no retry, no "max retries exceeded")
        assert await worker.handle_event({**ctx, "job_try": max_tries}, body) == "failed"
        [row] = await stored(sessionmaker, body["id"])
        assert row.status == EventStatus.failed
        assert row.error["tries"] == max_tries
        assert "503" in row.error["message"]
        assert row.body["id"] == body["id"]
        assert row.processed_at is not None

    async def test_a_processed_event_stays_processed_when_a_stale_job_gives_up(
        self,
        ctx: dict[str, Any],
        upstream: HangingUpstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Idempotency holds: one row, and a processed outcome is never turned into failed."""
        body = unblocked()
        assert await worker.handle_event({**ctx, "job_try": 1}, body) == "processed"
        upstream.fail_with = 503
        last = ctx["settings"].worker_max_tries
        assert await worker.handle_event({**ctx, "job_try": last}, body) == "duplicate"
        [row] = await stored(sessionmaker, body["id"])
        assert row.status == EventStatus.processed
        assert row.error is None

    async def test_a_hanging_upstream_ends_the_try_before_arqs_timeout(
        self,
        ctx: dict[str, Any],
        upstream: HangingUpstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """arq's timeout is final (the event would be dropped): the handler stops at 90 % of it
        and treats that as transient, retried, then stored failed on the last try."""
        upstream.hang = True
        body = unblocked()
        short = {**ctx, "job_timeout": 0.5, "max_tries": 2}
        with pytest.raises(Retry):
            await asyncio.wait_for(worker.handle_event({**short, "job_try": 1}, body), 5)
        assert await event_count(sessionmaker) == 0
        outcome = await asyncio.wait_for(worker.handle_event({**short, "job_try": 2}, body), 5)
        assert outcome == "failed"
        [row] = await stored(sessionmaker, body["id"])
        assert row.status == EventStatus.failed
        assert row.error == {"message": "TimeoutError()", "tries": 2}


class TestWithArq:
    async def test_exhausted_retries_store_failed_and_a_forced_replay_processes_it(
        self,
        settings: NotifierSettings,
        base_ctx: dict[str, Any],
        upstream: HangingUpstream,
        gateway: RecordingGateway,
        redis: ArqRedis,
        client: httpx.AsyncClient,
        make_token: Callable[..., Awaitable[str]],
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(worker, "backoff_seconds", lambda job_try: 0.01)
        headers = {"Authorization": f"Bearer {await make_token('letters:read')}"}
        q = settings.queue_name
        event = parse_event(unblocked())
        upstream.fail_with = 503
        assert await publish(redis, event, queue_name=q)
        await run_burst(settings, base_ctx, max_tries=3)

        # arq finished the job on its 3rd and last try, with the outcome as its result
        info = await Job(job_id_for(event.id), redis, _queue_name=q).result_info()
        assert info is not None
        assert (info.success, info.result, info.job_try) == (True, "failed", 3)
        shown = (await client.get(f"/v1/events/{event.id}", headers=headers)).json()
        assert shown["status"] == "failed"
        assert shown["error"]["tries"] == 3
        assert "503" in shown["error"]["message"]
        listed = (await client.get("/v1/events?status=failed", headers=headers)).json()
        assert [item["id"] for item in listed["items"]] == [str(event.id)]

        # publishing the same id again is a no-op: collapsed while arq keeps the result, a
        # duplicate after that (the event stays failed, one row)
        assert not await publish(redis, event, queue_name=q)
        await redis.delete(f"arq:result:{job_id_for(event.id)}")
        assert await publish(redis, event, queue_name=q)
        await run_burst(settings, base_ctx, max_tries=3)
        [row] = await stored(sessionmaker, event.id)
        assert row.status == EventStatus.failed

        # the upstream is back: `notifier events replay --force` runs it again
        upstream.fail_with = None
        assert gateway.sent_for(LETTER) == []
        outcome = await replay.replay(settings, event.id, force=True)
        assert outcome.endswith(": runs")
        await run_burst(settings, base_ctx, max_tries=3)
        [row] = await stored(sessionmaker, event.id)
        assert row.status == EventStatus.processed
        assert row.error is None
        assert len(gateway.sent_for(LETTER)) == 1

    async def test_a_try_that_outlasts_the_job_timeout_stores_the_event_failed(
        self,
        settings: NotifierSettings,
        base_ctx: dict[str, Any],
        upstream: HangingUpstream,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Without the handler's own deadline arq cancels the job at job_timeout and records it
        failed, with nothing stored (a timeout is never retried by arq)."""
        upstream.hang = True
        event = parse_event(unblocked())
        assert await publish(redis, event, queue_name=settings.queue_name)
        await run_burst(settings, base_ctx, max_tries=1, job_timeout=3)
        [row] = await stored(sessionmaker, event.id)
        assert row.status == EventStatus.failed
        assert row.error == {"message": "TimeoutError()", "tries": 1}
