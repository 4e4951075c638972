"""``notifier events replay`` and ``notifier drain --now``: operator entry points into the
worker's own functions (the job body and the drain), run from the command line."""

from __future__ import annotations

import uuid
from typing import Any

from arq.connections import RedisSettings, create_pool
from notifier_common.db import create_engine, create_sessionmaker, session_scope
from notifier_common.errors import Conflict, NotFound
from sqlalchemy import update

from notifier.events import repository as events_repository
from notifier.models import Event, EventStatus
from notifier.settings import NotifierSettings


async def replay(settings: NotifierSettings, event_id: uuid.UUID, *, force: bool) -> str:
    """Enqueue the stored body again as a ``handle_event`` job.

    A processed or rejected event is a no-op for the worker (it answers ``duplicate``), so
    without ``--force`` only ``failed`` / ``processing`` events are worth replaying; ``force``
    puts a ``failed`` event back to ``processing`` so the worker runs the planning again.
    """
    engine = create_engine(settings.database_url, pool_size=1, app_name="notifier-cli")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            event = await events_repository.get(session, event_id)
            if event is None:
                raise NotFound(f"event {event_id} is not stored")
            if event.status == EventStatus.rejected:
                raise Conflict("a rejected event has no valid body to replay")
            if force:
                if event.status != EventStatus.failed:
                    raise Conflict(
                        f"--force re-runs failed events only; this one is {event.status}"
                    )
                await session.execute(
                    update(Event)
                    .where(Event.id == event_id)
                    .values(status=EventStatus.processing, error=None)
                )
            body = event.body
            status = EventStatus.processing if force else event.status
    finally:
        await engine.dispose()
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        job = await redis.enqueue_job(
            "handle_event",
            body,
            _job_id=f"replay:{event_id}:{uuid.uuid4().hex[:8]}",
            _queue_name=settings.queue_name,
        )
    finally:
        await redis.aclose()
    effect = "no-op (already " + status.value + ")" if status == EventStatus.processed else "runs"
    return f"enqueued {job.job_id if job else '?'} for event {event_id}: {effect}"


async def drain_once(settings: NotifierSettings) -> dict[str, Any]:
    """One drain pass with the worker's sender, in this process."""
    from notifier.worker import build_sender, start_clients

    engine = create_engine(settings.database_url, pool_size=2, app_name="notifier-cli")
    ctx: dict[str, Any] = {"settings": settings, "sessionmaker": create_sessionmaker(engine)}
    try:
        start_clients(ctx, settings)
        report = await build_sender(ctx).drain()
        fields = ("claimed", "sent", "retried", "failed", "skipped", "expired", "cancelled")
        return {"batches": report.batches, **{f: getattr(report, f) for f in fields}}
    finally:
        for name in ("gateway_http", "upstream_http"):
            if name in ctx:
                await ctx[name].aclose()
        await engine.dispose()
