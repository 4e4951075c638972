"""arq worker: ``handle_event`` jobs (and, with the letter engine, the per-minute drain)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from arq import Retry, Worker, cron, func
from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms, to_seconds
from notifier_common.collector import WORKER_YOUNG_THRESHOLD, tune_collector
from notifier_common.db import create_engine, create_sessionmaker
from notifier_common.http import create_http_client
from notifier_common.logging import configure_logging, get_logger
from notifier_common.publisher import wake_channel
from sqlalchemy.exc import DBAPIError, OperationalError

from notifier.clock import Clock, system_clock
from notifier.enrichment import EnrichmentClient
from notifier.events import service
from notifier.events.batching import EventBatcher
from notifier.events.processing import BatchProcessor, EventProcessor, TransientEventError
from notifier.gateway_client import GatewayClient
from notifier.letters.drain import DeliveryConfig, LetterSender, Renderer
from notifier.letters.immediate import ImmediateSends
from notifier.letters.processor import LetterProcessor
from notifier.letters.service import PlanConfig
from notifier.letters.settings_service import SettingsCache
from notifier.letters.timing import QuietHours
from notifier.metrics import JOB_DURATION
from notifier.ops_server import LoopHeartbeat, start_ops_server
from notifier.settings import NotifierSettings, get_settings
from notifier.suppressions import tasks as suppression_tasks
from notifier.suppressions.feed import FeedUnavailable, GatewayFeeds

log = get_logger("notifier.worker")


def plan_config(settings: NotifierSettings) -> PlanConfig:
    return PlanConfig(
        quiet_hours=QuietHours(settings.quiet_hours_start, settings.quiet_hours_end),
        payment_url_template=settings.payment_url_template,
    )


def delivery_config(settings: NotifierSettings) -> DeliveryConfig:
    return DeliveryConfig(
        batch_size=settings.gateway_batch_size,
        concurrency=settings.letters_drain_concurrency,
        max_attempts=settings.letters_max_attempts,
        backoff_base=settings.letters_backoff_base,
        backoff_cap=settings.letters_backoff_cap,
        public_url=settings.public_url,
        secret_key=settings.secret_key,
    )


def sync_config(settings: NotifierSettings) -> suppression_tasks.SyncConfig:
    return suppression_tasks.SyncConfig(
        page_size=settings.gateway_sync_page_size,
        max_pages=settings.gateway_sync_max_pages,
        overlap=timedelta(seconds=settings.gateway_sync_overlap_seconds),
    )


def default_renderer() -> Renderer:
    from notifier.letters.rendering import render

    return render


def build_sender(ctx: dict[str, Any]) -> LetterSender:
    settings: NotifierSettings = ctx["settings"]
    return LetterSender(
        ctx["sessionmaker"],
        gateway=ctx["gateway"],
        enricher=ctx["enrichment"],
        render=ctx.get("render") or default_renderer(),
        config=delivery_config(settings),
        clock=ctx["clock"],
    )


def build_processor(ctx: dict[str, Any]) -> EventProcessor:
    """The letter engine: plans letters per event, sends the immediate ones after commit
    (coalesced across concurrent events), reads letter settings through a short cache."""
    settings: NotifierSettings = ctx["settings"]
    return LetterProcessor(
        enricher=ctx["enrichment"],
        config=plan_config(settings),
        clock=ctx["clock"],
        sender=ctx["sender"],
        settings=SettingsCache(ctx["sessionmaker"], ttl=settings.letter_settings_cache_seconds),
        immediate=ctx["immediate"],
    )


def build_batcher(ctx: dict[str, Any]) -> EventBatcher | None:
    """The group commit of events (decision 0040), if enabled and the processor supports it."""
    settings: NotifierSettings = ctx["settings"]
    processor = ctx["processor"]
    if not settings.worker_group_commit or not isinstance(processor, BatchProcessor):
        return None
    return EventBatcher(
        ctx["sessionmaker"],
        processor,
        max_events=settings.worker_batch_max_events,
        window=settings.worker_batch_window,
    )


def start_clients(ctx: dict[str, Any], settings: NotifierSettings) -> None:
    """One shared httpx client per upstream kind per process (closed in shutdown)."""
    clock: Clock = ctx.get("clock") or system_clock
    ctx["clock"] = clock
    ctx["gateway_http"] = ctx.get("gateway_http") or create_http_client(
        timeout=settings.gateway_timeout
    )
    ctx["upstream_http"] = ctx.get("upstream_http") or create_http_client(
        timeout=settings.upstream_timeout
    )
    ctx["gateway"] = GatewayClient(
        ctx["gateway_http"],
        base_url=settings.gateway_url,
        token=settings.gateway_token,
        batch_size=settings.gateway_batch_size,
    )
    ctx["gateway_feeds"] = GatewayFeeds(
        ctx["gateway_http"], base_url=settings.gateway_url, token=settings.gateway_token
    )
    ctx["enrichment"] = ctx.get("enrichment") or EnrichmentClient(
        ctx["upstream_http"],
        clients_url=settings.clients_service_url,
        billing_url=settings.billing_service_url,
        max_concurrency=settings.upstream_max_concurrency or None,
    )


class QuietEventJobLines(logging.Filter):
    """Drops arq's INFO start and finish line (``→``/``←``) of each ``handle_event`` job: two JSON
    lines and writes per event (~3 % of the worker's CPU) repeating what the notifier logs itself
    (``events.processed``, ``letters.planned``, ``worker.handle_event_retry``). arq's other lines
    (retries, aborts, failures, every other job) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.levelno != logging.INFO or not isinstance(args, tuple) or len(args) < 2:
            return True
        ref = args[1]
        if not isinstance(ref, str) or not ref.endswith(":handle_event"):
            return True
        msg = str(record.msg)
        return "\u2192" not in msg and "\u2190" not in msg


def quiet_event_job_lines() -> None:
    arq_log = logging.getLogger("arq.worker")
    if not any(isinstance(f, QuietEventJobLines) for f in arq_log.filters):
        arq_log.addFilter(QuietEventJobLines())


async def startup(ctx: dict[str, Any]) -> None:
    settings: NotifierSettings = ctx.get("settings") or get_settings()
    ctx["settings"] = settings
    configure_logging(level=settings.log_level, json=settings.json_logs)
    quiet_event_job_lines()
    ctx["engine"] = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        app_name="notifier-worker",
        pre_ping=False,  # a dropped connection fails the job, which arq retries (decision 0040)
        # a hung worker's drain batch (its row locks are the claim, decision 0103) is released
        # by the server: the transaction ends, the letters are due again for the other workers
        idle_in_transaction_seconds=settings.letters_lease_seconds,
    )
    ctx["sessionmaker"] = create_sessionmaker(ctx["engine"])
    start_clients(ctx, settings)
    ctx["sender"] = build_sender(ctx)
    ctx["immediate"] = ImmediateSends(
        ctx["sender"],
        window=settings.immediate_send_window,
        max_batch=settings.gateway_batch_size,
        max_in_flight=settings.immediate_send_max_in_flight,
    )
    ctx["processor"] = build_processor(ctx)
    ctx["batcher"] = build_batcher(ctx)
    # last: what start-up built is frozen out of the collector's walks (decision 0080), and
    # the young generation is collected every 10,000 allocations, not 700 (decision 0102)
    ctx["restore_collector"] = tune_collector(
        young_threshold=WORKER_YOUNG_THRESHOLD, middle_threshold=None
    )
    if settings.worker_metrics_port and not ctx.get("metrics_started"):
        heartbeat = LoopHeartbeat()
        try:
            ctx["ops_server"] = start_ops_server(
                settings.worker_metrics_port, addr=settings.api_host, heartbeat=heartbeat
            )
            heartbeat.start()
            ctx["heartbeat"] = heartbeat
            ctx["metrics_started"] = True
        except OSError as exc:
            log.warning(
                "worker.metrics_port_busy", port=settings.worker_metrics_port, error=str(exc)
            )


async def shutdown(ctx: dict[str, Any]) -> None:
    if ctx.get("heartbeat") is not None:
        await ctx.pop("heartbeat").stop()
    if ctx.get("ops_server") is not None:
        server = ctx.pop("ops_server")
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        ctx["metrics_started"] = False
    if ctx.get("restore_collector") is not None:
        ctx.pop("restore_collector")()
    for name in ("batcher", "immediate"):
        if ctx.get(name) is not None:
            await ctx[name].aclose()
    for name in ("gateway_http", "upstream_http"):
        if name in ctx:
            await ctx.pop(name).aclose()
    await ctx["engine"].dispose()


def backoff_seconds(job_try: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: 0..min(cap, base * 2**(try-1))."""
    return random.uniform(0, min(cap, base * 2 ** (job_try - 1)))


def job_limits(ctx: dict[str, Any]) -> tuple[int, float]:
    """The ``handle_event`` job's max tries and timeout: what :func:`create_worker` gave arq
    (kept in the worker's ctx), else the settings (a ctx built by hand, as in tests)."""
    settings: NotifierSettings = ctx["settings"]
    return (
        ctx.get("max_tries") or settings.worker_max_tries,
        ctx.get("job_timeout") or settings.worker_job_timeout,
    )


async def handle_event(ctx: dict[str, Any], body: Any) -> str:
    """arq job: store the event once, run the letter engine; retry transient failures.

    On the job's last try a transient failure stores the event ``failed`` instead (decision
    0093): arq would drop the job with nothing stored, since the event row is written in the
    transaction that failed. The handler gives up at 90 % of the job timeout with a
    ``TimeoutError`` (an ``OSError``, so transient) rather than be cancelled by arq, whose
    timeout is final and would drop the event the same way."""
    max_tries, job_timeout = job_limits(ctx)
    job_try: int = ctx.get("job_try", 1)
    with JOB_DURATION.labels("handle_event").time():
        try:
            async with asyncio.timeout(job_timeout * 0.9):
                batcher: EventBatcher | None = ctx.get("batcher")
                if batcher is not None:
                    return await batcher.handle(body)
                return await service.handle_event(ctx["sessionmaker"], ctx["processor"], body)
        except (TransientEventError, OperationalError, DBAPIError, OSError) as exc:
            if job_try >= max_tries:
                return await give_up(ctx, body, exc, tries=job_try)
            delay = backoff_seconds(job_try)
            log.warning("worker.handle_event_retry", error=repr(exc)[:300], defer=delay)
            raise Retry(defer=delay) from exc


async def give_up(ctx: dict[str, Any], body: Any, exc: Exception, *, tries: int) -> str:
    """The last try failed transiently: store the event ``failed`` with the error (the same
    path as a permanent failure), to be found in ``GET /v1/events?status=failed`` and run again
    with ``notifier events replay --force``. An event processed meanwhile by another job stays
    processed (``duplicate``). If even that write fails (the database is down), the error is
    logged and raised: arq keeps the failed job, body included, as its result for an hour."""
    event = service.validate(body).event
    if event is None:  # an invalid body whose ``rejected`` row could not be stored
        log.error("worker.handle_event_lost", tries=tries, error=repr(exc)[:300])
        raise exc
    try:
        return await service.fail(ctx["sessionmaker"], event, exc, source="queue", tries=tries)
    except Exception as store_exc:
        log.error(
            "worker.handle_event_lost",
            event_id=str(event.id),
            tries=tries,
            error=repr(exc)[:300],
            store_error=repr(store_exc)[:300],
        )
        raise


async def drain_due_letters(ctx: dict[str, Any]) -> dict[str, int]:
    """arq cron, every minute: deliver every letter due now (batches until none is due)."""
    with JOB_DURATION.labels("drain_due_letters").time():
        sender: LetterSender = ctx["sender"]
        report = await sender.drain(now=ctx["clock"]())
        return {"batches": report.batches, "claimed": report.claimed, "sent": report.sent}


async def send_letters(ctx: dict[str, Any], letter_ids: list[int]) -> dict[str, int]:
    """arq job: send letters an operator just created (manual send, resend) without waiting for
    the minute. Only ``scheduled`` rows are claimed, so a repeat or a race with the drain sends
    nothing twice; anything not sent here is the drain's."""
    with JOB_DURATION.labels("send_letters").time():
        sender: LetterSender = ctx["sender"]
        report = await sender.send_now(letter_ids)
        return {"claimed": report.claimed, "sent": report.sent}


async def sync_suppressions(ctx: dict[str, Any]) -> dict[str, int]:
    """arq cron, every minute: pull the gateway's suppression feed, then its status feed."""
    out: dict[str, int] = {}
    for name, run in (
        ("suppressions", suppression_tasks.sync_suppressions),
        ("statuses", suppression_tasks.sync_delivery_statuses),
    ):
        with JOB_DURATION.labels(f"sync_{name}").time():
            try:
                report = await run(
                    ctx["sessionmaker"], ctx["gateway_feeds"], sync_config(ctx["settings"])
                )
            except FeedUnavailable as exc:  # the next minute starts from the same watermark
                log.warning("worker.gateway_sync_failed", feed=name, error=str(exc))
                out[f"{name}_failed"] = 1
                continue
        out[name] = report.applied
    return out


def worker_settings(settings: NotifierSettings) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``; throughput knobs set deliberately.

    arq's defaults (max_jobs=10, poll_delay=0.5) cap a worker at 200 jobs/s. Jobs are retried only
    when they raise ``Retry`` (transient errors, with jittered backoff) or when the worker dies
    mid-job (the in-progress key expires after job_timeout + 10 s); a timeout is final in arq, so
    job_timeout is far above the handler's worst case (upstream retries included), and
    ``handle_event`` stops itself at 90 % of it (a transient failure: retried, or on the last
    try stored ``failed``, decision 0093).
    """
    return {
        "functions": [
            func(handle_event, name="handle_event"),
            func(send_letters, name="send_letters"),
        ],
        "cron_jobs": [
            cron(
                drain_due_letters,
                name="drain_due_letters",
                second=0,
                unique=True,
                run_at_startup=False,
                timeout=settings.worker_job_timeout * 10,
            ),
            cron(
                sync_suppressions,
                name="sync_suppressions",
                second=30,  # half a minute away from the drain
                unique=True,
                run_at_startup=False,
                timeout=settings.worker_job_timeout * 5,
            ),
        ],
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


# Claims several queued jobs in one atomic call, with arq's per-job checks unchanged: a job is
# started only if no in-progress key exists and it is still in the queue with a score that is
# not zero and not in the future; its in-progress key is then set with arq's timeout. For each
# claimed job it also does what arq's ``run_job`` does first (decision 0077): GET the job,
# INCR the try counter (EXPIRE 88400 s), ZREM it from the abort set when aborts are allowed.
# Returns id, score, job (nil if gone), try[, removed from abort set] per claimed job.
# KEYS: queue, then per id its in-progress, job and retry keys[, the abort set].
# ARGV: now ms, in-progress timeout ms, "1" if aborts are allowed, then the ids.
CLAIM_JOBS_LUA = """
local now = tonumber(ARGV[1])
local abort = ARGV[3] == '1'
local per = 3
local n = #ARGV - 3
local out = {}
for i = 0, n - 1 do
  local ip, jk, rk = KEYS[2 + per * i], KEYS[3 + per * i], KEYS[4 + per * i]
  if redis.call('EXISTS', ip) == 0 then
    local id = ARGV[4 + i]
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) ~= 0 and tonumber(score) <= now then
      redis.call('PSETEX', ip, ARGV[2], '1')
      out[#out + 1] = id
      out[#out + 1] = score
      out[#out + 1] = redis.call('GET', jk)
      out[#out + 1] = redis.call('INCR', rk)
      redis.call('EXPIRE', rk, 88400)
      if abort then
        out[#out + 1] = redis.call('ZREM', KEYS[#KEYS], id)
      end
    end
  end
end
return out
"""

# (job id, job bytes or None, job try, removed from the abort set) of the job whose run_job task
# is being created: its first pipeline is answered from the claim (see NotifierWorker._pipeline)
_STARTED: ContextVar[tuple[str, bytes | None, int, int] | None] = ContextVar(
    "notifier_job_started", default=None
)


class _AnsweredStart:
    """Stands in for the first pipeline of arq's ``run_job`` (GET job, INCR + EXPIRE try, ZREM
    abort), whose commands the claim script already ran for this job: it checks that arq queued
    exactly those and returns their replies. Anything else is an arq change: it fails loudly."""

    def __init__(self, job_id: str, value: bytes | None, job_try: int, aborted: int) -> None:
        self.job_id = job_id
        self.replies = [value, job_try, True, aborted]
        self.commands: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> _AnsweredStart:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def get(self, name: str) -> None:
        self.commands.append(("GET", name))

    def incr(self, name: str) -> None:
        self.commands.append(("INCR", name))

    def expire(self, name: str, time: int) -> None:
        self.commands.append(("EXPIRE", name, time))

    def zrem(self, name: str, *values: str) -> None:
        self.commands.append(("ZREM", name, *values))

    async def execute(self) -> list[Any]:
        job_id = self.job_id
        expected: list[tuple[Any, ...]] = [
            ("GET", job_key_prefix + job_id),
            ("INCR", retry_key_prefix + job_id),
            ("EXPIRE", retry_key_prefix + job_id, 88400),
        ]
        if len(self.commands) == 4:
            expected.append(("ZREM", abort_jobs_ss, job_id))
        if self.commands != expected:
            raise RuntimeError(f"arq's run_job queued {self.commands}, expected {expected}")
        return self.replies[: len(expected)]


class NotifierWorker(Worker):
    """arq's worker, with jobs started several at a time (decision 0048).

    arq's ``start_jobs`` spends four sequential Redis round trips per job (WATCH, EXISTS, ZSCORE,
    MULTI/PSETEX/EXEC), so under load jobs trickled in one by one and the group commit (decision
    0040) wrote batches of ~4 events. Here every free slot is taken at once and the ids are
    checked and marked in one Lua call, which does arq's checks atomically per id (as its
    WATCH/MULTI did). Ids of jobs running in this process are skipped without asking Redis.
    Everything after the claim (``run_job``: job fetch, ``job_try``, abort, retries, results)
    is arq's own code.

    Between polls it waits for a wake-up (decision 0109): the notifier's enqueues publish on
    the queue's wake channel, which this worker subscribes to, so a published event starts at
    once instead of at the next poll; ``poll_delay`` is the longest wait (what a producer
    enqueuing with arq's own ``enqueue_job`` waits, and deferred jobs such as retries). A poll
    that read a full page polls again at once. A burst worker polls as arq does."""

    _claim_script: Any = None
    _finishes: list[tuple[tuple[Any, ...], asyncio.Future[None]]] | None = None
    finish_flushes = 0  # transactions that finished jobs (observability for tests)
    polls = 0  # queue polls so far (observability for tests)
    _finishing: set[asyncio.Task[None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finishing = set()
        # arq's loop polls back to back; the wait between polls is ``_wait_for_work``'s
        self.wait_delay_s = self.poll_delay_s
        self.poll_delay_s = 0.0
        self._woken = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._page_full = False

    async def _poll_iteration(self) -> None:
        if self._listener is None and not self.burst:
            self._listener = self.loop.create_task(self._listen_for_wakes())
        self._woken.clear()  # what was published before this poll, this poll reads
        self.polls += 1
        await super()._poll_iteration()
        await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        """Until a wake-up arrives or ``wait_delay_s`` passed; with every slot taken, until one
        is free (at most ``wait_delay_s``: the heartbeat and cron run between polls); not at
        all after a poll that read a full page (more jobs are due)."""
        if self._page_full:
            self._page_full = False
            return
        full = self.job_counter >= self.max_jobs
        if self._woken.is_set() and not full:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._slot_free() if full else self._woken.wait(), self.wait_delay_s
            )

    async def _slot_free(self) -> None:
        async with self.sem:
            pass

    async def _listen_for_wakes(self) -> None:
        """Subscribe to the wake channel and set ``_woken`` on each message, for the life of
        the worker; a lost subscription is logged and made again (polls go on meanwhile)."""
        channel = wake_channel(self.queue_name)
        while True:
            pubsub = self.pool.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self._woken.set()  # anything published while not subscribed: poll once
                async for _ in pubsub.listen():
                    self._woken.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker.wake_subscription_lost", error=repr(exc)[:300])
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await super().close()

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's ``finish_job``, coalesced (decision 0077): the jobs of one group-commit batch
        complete in the same loop iteration, and their finishes now share one MULTI/EXEC
        instead of one transaction (a write and a read syscall, ~6 replies) per job. Each
        caller still returns only once its own commands are executed, and sees the error if
        the transaction fails."""
        done: asyncio.Future[None] = self.loop.create_future()
        entry = (
            job_id,
            finish,
            result_data,
            result_timeout_s,
            keep_result_forever,
            incr_score,
            keep_in_progress,
        )
        if self._finishes is None:
            self._finishes = []
            self.loop.call_soon(self._flush_finishes)
        self._finishes.append((entry, done))
        await done

    def _flush_finishes(self) -> None:
        batch, self._finishes = self._finishes or [], None
        task = self.loop.create_task(self._finish_all(batch))
        self._finishing.add(task)  # a reference until done; callers await their futures
        task.add_done_callback(self._finishing.discard)

    async def _finish_all(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]]) -> None:
        self.finish_flushes += 1
        try:
            async with self.pool.pipeline(transaction=True) as tr:
                for entry, _ in batch:
                    _queue_finish(tr, self.queue_name, *entry)
                await tr.execute()
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self._page_full = len(job_ids) >= self.queue_read_limit
        running = self.tasks
        pending = [i.decode() for i in job_ids if i.decode() not in running]
        while pending:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return None
            take = 1
            limit = min(len(pending), self.max_jobs - self.job_counter)
            while take < limit and not self.sem.locked():
                await self.sem.acquire()  # free slot: returns without suspending
                take += 1
            self.job_counter += take
            batch, pending = pending[:take], pending[take:]
            claimed = await self._claim(batch)
            for job_id in batch:
                started = claimed.get(job_id)
                if started is None:  # running elsewhere, finished, or re-enqueued for later
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                score, value, job_try, aborted = started
                token = _STARTED.set((job_id, value, job_try, aborted))
                try:  # the task's context is a copy: only its run_job sees this
                    t = self.loop.create_task(self.run_job(job_id, score))
                finally:
                    _STARTED.reset(token)
                t.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = t
        return None

    async def _claim(self, job_ids: list[str]) -> dict[str, tuple[int, bytes | None, int, int]]:
        pool = self.pool
        if self._claim_script is None:
            self._claim_script = pool.register_script(CLAIM_JOBS_LUA)
        if pool.__dict__.get("pipeline") != self._pipeline:
            pool.pipeline = self._pipeline  # type: ignore[method-assign]
        keys = [self.queue_name]
        for i in job_ids:
            keys += (in_progress_key_prefix + i, job_key_prefix + i, retry_key_prefix + i)
        abort = self.allow_abort_jobs
        if abort:
            keys.append(abort_jobs_ss)
        now = timestamp_ms()
        args = [now, int(self.in_progress_timeout_s * 1000), "1" if abort else "0", *job_ids]
        out = await self._claim_script(keys=keys, args=args)
        per = 5 if abort else 4
        return {
            out[i].decode(): (
                int(float(out[i + 1])),
                out[i + 2],
                int(out[i + 3]),
                int(out[i + 4]) if abort else 0,
            )
            for i in range(0, len(out), per)
        }

    def _pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        """The pool's ``pipeline``: arq's own, except for the first pipeline of a ``run_job``
        task created right after its claim, which the claim already answered."""
        started = _STARTED.get()
        if started is not None:
            _STARTED.set(None)
            return _AnsweredStart(*started)
        return ArqRedis.pipeline(self.pool, transaction, shard_hint)


def _queue_finish(
    tr: Any,
    queue_name: str,
    job_id: str,
    finish: bool,
    result_data: bytes | None,
    result_timeout_s: float | None,
    keep_result_forever: bool,
    incr_score: int | None,
    keep_in_progress: float | None,
) -> None:
    """The commands of arq's ``Worker.finish_job`` (arq 0.26) for one job, on a shared
    transaction."""
    delete_keys = []
    in_progress_key = in_progress_key_prefix + job_id
    if keep_in_progress is None:
        delete_keys.append(in_progress_key)
    else:
        tr.pexpire(in_progress_key, to_ms(keep_in_progress))
    if finish:
        if result_data:
            expire = None if keep_result_forever else result_timeout_s
            tr.set(result_key_prefix + job_id, result_data, px=to_ms(expire))
        delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
        tr.zrem(abort_jobs_ss, job_id)
        tr.zrem(queue_name, job_id)
    elif incr_score:
        tr.zincrby(queue_name, incr_score, job_id)
    if delete_keys:
        tr.delete(*delete_keys)


def use_uvloop() -> None:
    """Run the worker's event loop on uvloop (decision 0075): the loop's own work (callbacks,
    socket reads and writes for Redis, PostgreSQL, the gateway and the upstreams) was ~22 % of
    the worker's CPU on the stdlib loop. arq's ``Worker`` takes ``asyncio.get_event_loop()``
    when it is built, so call this before :func:`create_worker`."""
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def create_worker(settings: NotifierSettings | None = None, **overrides: Any) -> Worker:
    kwargs = worker_settings(settings or get_settings())
    kwargs.update(overrides)
    # handle_event stores its event failed on the last try, before arq's timeout (decision 0093)
    kwargs["ctx"] = {
        **(kwargs.get("ctx") or {}),
        "max_tries": kwargs["max_tries"],
        "job_timeout": to_seconds(kwargs["job_timeout"]),
    }
    return NotifierWorker(**kwargs)
