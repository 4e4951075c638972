"""Publisher for Python producers: ``await publish(redis, event)``.

Enqueues the arq job ``handle_event`` on the notifier's queue with ``_job_id = "event:<id>"``:
a duplicate publish while the job (or its result) is still in Redis collapses to nothing, and
the notifier's unique event id makes any later duplicate a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from notifier_common.events import Envelope

DEFAULT_QUEUE = "notifier:queue"
HANDLE_EVENT = "handle_event"


def job_id_for(event_id: object) -> str:
    return f"event:{event_id}"


def event_job_args(event: Envelope) -> dict[str, Any]:
    return event.model_dump(mode="json")


async def publish(redis: ArqRedis, event: Envelope, *, queue_name: str = DEFAULT_QUEUE) -> bool:
    """Enqueue one event. Returns False when an identical job id is already queued."""
    job = await redis.enqueue_job(
        HANDLE_EVENT,
        event_job_args(event),
        _job_id=job_id_for(event.id),
        _queue_name=queue_name,
    )
    return job is not None


async def publish_many(
    redis: ArqRedis, events: Iterable[Envelope], *, queue_name: str = DEFAULT_QUEUE
) -> list[bool]:
    """Enqueue several events; one bool per event (False = collapsed duplicate)."""
    return [await publish(redis, e, queue_name=queue_name) for e in events]


async def connect(redis_url: str) -> ArqRedis:
    """An arq pool for producers that have nothing but a Redis URL."""
    return await create_pool(RedisSettings.from_dsn(redis_url))
