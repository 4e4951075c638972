# ruff: noqa: F811  (pytest fixtures imported from the letter-engine conftest)
"""Manual sends and resends go out right away through a worker, not at the next drain."""

from __future__ import annotations

import httpx
import respx
from arq.connections import RedisSettings, create_pool
from notifier.models import LetterOrigin, LetterStatus
from notifier.settings import NotifierSettings
from notifier.worker import create_worker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.notifier.letters.conftest import (  # noqa: F401
    RecordingGateway,
    gateway,
    router,
    upstream,
)
from tests.notifier.operator.conftest import InsertLetters, letter_row
from tests.notifier.operator.test_sending import snapshot


async def run_burst_worker(settings: NotifierSettings) -> None:
    worker = create_worker(settings, burst=True, poll_delay=0.01)
    try:
        await worker.main()
    finally:
        await worker.close()


async def queued_jobs(settings: NotifierSettings) -> int:
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        return int(await redis.zcard(settings.queue_name))
    finally:
        await redis.aclose()


async def statuses(sm: async_sessionmaker[AsyncSession]) -> dict[str, LetterStatus]:
    from notifier.models import Letter

    async with sm() as s:
        rows = (await s.execute(select(Letter.origin, Letter.status))).all()
    return {origin.value: status for origin, status in rows}


class TestSendNow:
    async def test_manual_send_is_delivered_by_the_worker_job(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        router: respx.MockRouter,
        gateway: RecordingGateway,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await client.post(
            "/v1/letters:send",
            json={"letter": "FinancialUnblockNotice", "client_id": "client-1"},
            headers=writer,
        )
        assert r.status_code == 201, r.text
        assert await queued_jobs(settings) == 1
        await run_burst_worker(settings)
        assert await statuses(sessionmaker) == {"manual": LetterStatus.sent}
        [sent] = gateway.sent_for("FinancialUnblockNotice")
        assert sent["idempotency_key"] == f"letter-{r.json()['letters'][0]['id']}"

    async def test_resend_is_delivered_by_the_worker_job(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        router: respx.MockRouter,
        gateway: RecordingGateway,
        insert_letters: InsertLetters,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [original] = await insert_letters(
            letter_row(1, status=LetterStatus.failed, context=snapshot())
        )
        r = await client.post(f"/v1/letters/{original}:resend", headers=writer)
        assert r.status_code == 201, r.text
        await run_burst_worker(settings)
        assert (await statuses(sessionmaker))[LetterOrigin.resend.value] == LetterStatus.sent
        assert len(gateway.sent_for("LowBalanceNotice")) == 1

    async def test_a_repeated_job_sends_nothing_twice(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        router: respx.MockRouter,
        gateway: RecordingGateway,
        settings: NotifierSettings,
    ) -> None:
        r = await client.post(
            "/v1/letters:send",
            json={"letter": "FinancialUnblockNotice", "client_id": "client-1"},
            headers=writer,
        )
        letter_id = r.json()["letters"][0]["id"]
        await run_burst_worker(settings)
        redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        try:
            await redis.enqueue_job("send_letters", [letter_id], _queue_name=settings.queue_name)
        finally:
            await redis.aclose()
        await run_burst_worker(settings)
        assert len(gateway.sent) == 1
