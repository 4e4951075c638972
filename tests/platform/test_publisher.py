"""``publish()`` from a plain asyncio program that has nothing but libs/common."""

from __future__ import annotations

import asyncio
import sys
import uuid
from asyncio.subprocess import PIPE

from arq.connections import RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from notifier_common.devservices import Services, with_database
from notifier_common.publisher import job_id_for

PRODUCER = """
import asyncio, sys, uuid
from datetime import UTC, datetime

from notifier_common.events import parse_event
from notifier_common.publisher import connect, publish

async def main(redis_url: str, event_id: str, queue: str) -> None:
    redis = await connect(redis_url)
    event = parse_event({
        "id": event_id, "type": "client.balance_changed", "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "producer": "billing",
        "client_id": "client-7", "payload": {"old_balance": "10.00", "new_balance": "1.00"},
    })
    first = await publish(redis, event, queue_name=queue)
    again = await publish(redis, event, queue_name=queue)
    await redis.aclose()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"notifier", "gateway"})
    print(first, again, leaked)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_plain_asyncio_producer_enqueues_handle_event(services: Services) -> None:
    # a db of its own and a unique queue: no other test's flushdb can race this one
    redis_url = with_database(services.redis_url, "13")
    event_id = str(uuid.uuid4())
    queue = f"notifier:producer:{uuid.uuid4().hex[:8]}"
    producer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRODUCER, redis_url, event_id, queue, stdout=PIPE, stderr=PIPE
    )
    stdout, stderr = await asyncio.wait_for(producer.communicate(), timeout=60)
    assert producer.returncode == 0, stderr.decode()
    out = stdout.decode()
    assert out.split() == ["True", "False", "[]"]  # duplicate collapsed; no service imported

    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        job = Job(job_id_for(event_id), redis, _queue_name=queue)
        assert await job.status() == JobStatus.queued
        info = await job.info()
        assert info is not None
        assert info.function == "handle_event"
        assert info.args[0]["id"] == event_id
        assert info.args[0]["client_id"] == "client-7"
    finally:
        await redis.delete(queue, f"arq:job:{job_id_for(event_id)}")
        await redis.aclose()
