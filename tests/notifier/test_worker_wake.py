"""Workers wake on a publish instead of waiting for their next poll (decision 0109).

The notifier's enqueue (``notifier_common.publisher``, ``POST /v1/events``) publishes on the
queue's wake channel in the same Lua call; a running worker subscribes and polls at once. These
tests give the worker a poll delay far above their timeouts, so only the wake-up (or the
page-full / slot-free rule) can have started the job in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from arq.connections import ArqRedis
from notifier import worker
from notifier.events.processing import NoLetters
from notifier.models import Event
from notifier.settings import NotifierSettings
from notifier.worker import NotifierWorker, create_worker
from notifier_common.events import parse_event
from notifier_common.publisher import publish, publish_many, wake_channel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body

LONG_POLL = 60.0  # seconds: far beyond every wait below
IN_TIME = 10.0


@pytest.fixture(autouse=True)
def _store_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "build_processor", lambda ctx: NoLetters())


async def subscribers(redis: ArqRedis, channel: str) -> int:
    counts = await redis.pubsub_numsub(channel)
    return int(dict((k.decode(), v) for k, v in counts).get(channel, 0))


async def eventually(check: Any, *, within: float = IN_TIME) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_worker(
    settings: NotifierSettings, redis: ArqRedis, **overrides: Any
) -> AsyncIterator[NotifierWorker]:
    """A long-running (not burst) worker, subscribed to the wake channel before it yields."""
    w = create_worker(settings, handle_signals=False, **{"poll_delay": LONG_POLL, **overrides})
    assert isinstance(w, NotifierWorker)
    main = asyncio.create_task(w.main())
    try:
        channel = wake_channel(settings.queue_name)

        async def listening() -> bool:
            assert not main.done(), main
            return await subscribers(redis, channel) == 1 and w.polls >= 1

        await eventually(listening)
        yield w
    finally:
        # jobs the test waited for may still be writing their results: let them end, or the
        # cancel below reaches them mid-pipeline and arq's close() re-raises their CancelledError
        if w.tasks:
            await asyncio.wait(list(w.tasks.values()), timeout=IN_TIME)
        main.cancel()
        await asyncio.gather(main, return_exceptions=True)
        await w.close()


async def next_message(pubsub: Any, within: float) -> Any:
    """The next published message (redis-py answers None for each skipped subscribe reply)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        message = await pubsub.get_message(timeout=left)
        if message is not None:
            return message
    return None


def stored(sm: async_sessionmaker[AsyncSession], n: int) -> Any:
    async def check() -> bool:
        async with sm() as s:
            return (await s.scalar(select(func.count()).select_from(Event))) == n

    return check


class TestPublisherWakes:
    async def test_an_enqueue_publishes_how_many_jobs_it_added(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(wake_channel(settings.queue_name))
        try:
            events = [parse_event(event_body()) for _ in range(3)]
            await publish_many(redis, events, queue_name=settings.queue_name)
            message = await next_message(pubsub, 5)
            assert message is not None
            assert message["data"] == b"3"
            # all three again: nothing added, nobody woken
            assert await publish_many(redis, events, queue_name=settings.queue_name) == [False] * 3
            assert await next_message(pubsub, 0.3) is None
        finally:
            await pubsub.aclose()


async def kill_subscriptions(redis: ArqRedis) -> int:
    """Close the subscribed connections on this test's Redis db; how many. ``CLIENT KILL TYPE
    pubsub`` would close every subscriber of the server, including those of a test another
    xdist worker runs at the same time (it failed one in CI)."""
    db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    killed = 0
    for client in await redis.client_list(_type="pubsub"):
        if int(client["db"]) == db:
            killed += await redis.client_kill_filter(_id=client["id"])
    return killed


class TestWorkerWakes:
    async def test_a_published_event_starts_without_waiting_for_the_poll(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async with running_worker(settings, redis) as w:
            polls = w.polls
            await publish(redis, parse_event(event_body()), queue_name=settings.queue_name)
            await eventually(stored(sessionmaker, 1))
            assert w.polls > polls

    async def test_after_its_subscription_is_lost_the_worker_subscribes_again(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        channel = wake_channel(settings.queue_name)
        async with running_worker(settings, redis):
            assert await kill_subscriptions(redis) == 1

            async def again() -> bool:
                return await subscribers(redis, channel) == 1

            await asyncio.sleep(0.1)
            await eventually(again)
            await publish(redis, parse_event(event_body()), queue_name=settings.queue_name)
            await eventually(stored(sessionmaker, 1))

    async def test_a_job_enqueued_without_a_wake_starts_at_the_poll_delay(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """arq's own ``enqueue_job`` publishes nothing: the timed poll still finds the job."""
        async with running_worker(settings, redis, poll_delay=0.2):
            await redis.enqueue_job("handle_event", event_body(), _queue_name=settings.queue_name)
            await eventually(stored(sessionmaker, 1))

    async def test_a_backlog_larger_than_the_slots_is_read_without_waiting(
        self,
        settings: NotifierSettings,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Jobs queued with no wake-up, more than a page (2 x max_jobs) and than the slots: a
        poll that read a full page polls again at once, and a full worker polls when a slot is
        free, never waiting for the (long) poll delay."""
        for _ in range(12):
            await redis.enqueue_job("handle_event", event_body(), _queue_name=settings.queue_name)
        async with running_worker(settings, redis, max_jobs=2, queue_read_limit=4):
            await eventually(stored(sessionmaker, 12))

    async def test_a_burst_worker_does_not_subscribe(
        self, settings: NotifierSettings, redis: ArqRedis
    ) -> None:
        w = create_worker(settings, burst=True, poll_delay=0.01)
        try:
            await w.main()
            assert await subscribers(redis, wake_channel(settings.queue_name)) == 0
        finally:
            await w.close()
