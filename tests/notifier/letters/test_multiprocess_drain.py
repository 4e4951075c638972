"""Two real worker processes drain 5,000 due letters through a real gateway process.

Exactly once is checked where it matters, at the provider: the gateway's `log` provider records
every message it delivers, so each letter must appear there once and only once.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import respx
from notifier.settings import NotifierSettings
from notifier_common.devservices import to_libpq
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.notifier.letters.conftest import START, Engine
from tests.notifier.letters.test_concurrency import N, seed_due_letters

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
NOW = START + timedelta(days=7, hours=1)

# Starts the worker's real startup(), waits at a Redis barrier so both drain side by side, then
# runs the real per-minute cron function once with the clock fixed at NOW.
DRAIN = """
import asyncio, json, sys
from datetime import datetime
from redis.asyncio import Redis
from notifier.settings import NotifierSettings
from notifier.worker import drain_due_letters, shutdown, startup

async def main(now: str, barrier: str) -> None:
    settings = NotifierSettings()
    ctx = {"settings": settings, "clock": lambda: datetime.fromisoformat(now)}
    await startup(ctx)
    redis = Redis.from_url(settings.redis_url)
    await redis.incr(barrier)
    while int(await redis.get(barrier)) < 2:
        await asyncio.sleep(0.05)
    await redis.aclose()
    try:
        print(json.dumps(await drain_due_letters(ctx)))
    finally:
        await shutdown(ctx)

asyncio.run(main(*sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError(f"gateway exited with {proc.returncode}")
            try:
                if (await http.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_worker_processes_deliver_5000_letters_exactly_once_at_the_provider(
    settings: NotifierSettings,
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    router: respx.MockRouter,
    letter_engine: Engine,
) -> None:
    await seed_due_letters(letter_engine, sessionmaker)  # the upstream is only needed here
    router.route(host="127.0.0.1").pass_through()  # our own gateway process is real
    from gateway.tokens import create_token

    token = await create_token(database_url, name="notifier", scopes=["messages:write"])
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_ENV": "test",
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_REDIS_URL": redis_url,
        "NOTIFIER_ENV": "test",
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_REDIS_URL": redis_url,
        "NOTIFIER_GATEWAY_URL": f"http://127.0.0.1:{port}",
        "NOTIFIER_GATEWAY_TOKEN": token,
        "NOTIFIER_WORKER_METRICS_PORT": "0",
        "NOTIFIER_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    gateway = await asyncio.create_subprocess_exec(
        str(BIN / "gateway"),
        "api",
        "--port",
        str(port),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", gateway)
        barrier = "test:drain-barrier"
        drains = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                DRAIN,
                NOW.isoformat(),
                barrier,
                env=env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        outputs = [await d.communicate() for d in drains]
    finally:
        gateway.terminate()
        await gateway.wait()
    for drain, (_out, err) in zip(drains, outputs, strict=True):
        assert drain.returncode == 0, err.decode()[-3000:]
    reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["claimed"] > 0 for r in reports), reports  # both drained side by side
    assert sum(r["sent"] for r in reports) == N

    conn = await asyncpg.connect(to_libpq(database_url))
    try:
        delivered = await conn.fetchval("SELECT count(*) FROM gateway.logged_messages")
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT m.request::jsonb->'metadata'->>'letter_id')"
            " FROM gateway.logged_messages l JOIN gateway.messages m ON m.id = l.message_id"
        )
        statuses = dict(
            await conn.fetch("SELECT status, count(*) FROM notifier.letters GROUP BY status")
        )
    finally:
        await conn.close()
    assert (delivered, distinct) == (N, N)  # each letter reached the provider exactly once
    assert statuses == {"sent": N}
    redis = Redis.from_url(redis_url)
    await redis.delete("test:drain-barrier")
    await redis.aclose()
