"""arq worker: ``handle_event`` jobs (and, with the letter engine, the per-minute drain)."""

from __future__ import annotations

import random
from typing import Any

from arq import Retry, Worker, func
from arq.connections import RedisSettings
from notifier_common.db import create_engine, create_sessionmaker
from notifier_common.logging import configure_logging, get_logger
from prometheus_client import start_http_server
from sqlalchemy.exc import DBAPIError, OperationalError

from notifier.events import service
from notifier.events.processing import EventProcessor, NoLetters, TransientEventError
from notifier.metrics import JOB_DURATION
from notifier.settings import NotifierSettings, get_settings

log = get_logger("notifier.worker")


def build_processor(ctx: dict[str, Any]) -> EventProcessor:
    """The letter engine plugs in here; until it does, events are only stored."""
    return NoLetters()


async def startup(ctx: dict[str, Any]) -> None:
    settings: NotifierSettings = ctx.get("settings") or get_settings()
    ctx["settings"] = settings
    configure_logging(level=settings.log_level, json=settings.json_logs)
    ctx["engine"] = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, app_name="notifier-worker"
    )
    ctx["sessionmaker"] = create_sessionmaker(ctx["engine"])
    ctx["processor"] = build_processor(ctx)
    if settings.worker_metrics_port and not ctx.get("metrics_started"):
        try:
            start_http_server(settings.worker_metrics_port, addr=settings.api_host)
            ctx["metrics_started"] = True
        except OSError as exc:
            log.warning(
                "worker.metrics_port_busy", port=settings.worker_metrics_port, error=str(exc)
            )


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def backoff_seconds(job_try: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: 0..min(cap, base * 2**(try-1))."""
    return random.uniform(0, min(cap, base * 2 ** (job_try - 1)))


async def handle_event(ctx: dict[str, Any], body: Any) -> str:
    """arq job: store the event once, run the letter engine; retry transient failures."""
    with JOB_DURATION.labels("handle_event").time():
        try:
            return await service.handle_event(ctx["sessionmaker"], ctx["processor"], body)
        except (TransientEventError, OperationalError, DBAPIError, OSError) as exc:
            delay = backoff_seconds(ctx.get("job_try", 1))
            log.warning("worker.handle_event_retry", error=repr(exc)[:300], defer=delay)
            raise Retry(defer=delay) from exc


def worker_settings(settings: NotifierSettings) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``; throughput knobs set deliberately.

    arq's defaults (max_jobs=10, poll_delay=0.5) cap a worker at 200 jobs/s. Jobs are retried only
    when they raise ``Retry`` (transient errors, with jittered backoff) or when the worker dies
    mid-job (the in-progress key expires after job_timeout + 10 s); a timeout is final in arq, so
    job_timeout is far above the handler's worst case (upstream retries included).
    """
    return {
        "functions": [func(handle_event, name="handle_event")],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay,
        "queue_read_limit": settings.worker_max_jobs * 2,
        "job_timeout": settings.worker_job_timeout,
        "max_tries": settings.worker_max_tries,
        "keep_result": 3600,
        "health_check_interval": 30,
        "ctx": {"settings": settings},
    }


def create_worker(settings: NotifierSettings | None = None, **overrides: Any) -> Worker:
    kwargs = worker_settings(settings or get_settings())
    kwargs.update(overrides)
    return Worker(**kwargs)
