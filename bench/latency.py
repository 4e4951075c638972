"""``latency``: immediate letters (ActivateClientNotice via client.activated, prepaid taxi)
published at a fixed rate (200 events/s) for S seconds with the Python producers' publisher
(``notifier_common.publisher.publish``) into the real worker (long-running, 1 process), the real
gateway (``log`` provider) and the upstream stub. Latency per event: the gateway's sent_at of
the letter's message (idempotency key ``letter-<id>``: when the provider accepted it) minus the
event's occurred_at (set at publish). Value: p99 in ms.
Events whose letter is not sent within the grace period count with the time waited so far (so
the percentile is a lower bound, flagged ``lower_bound``)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from notifier_common.events import ClientActivated, ClientActivatedPayload
from notifier_common.publisher import connect, publish

from bench import cpu, drain, letters, processing, stats
from bench.config import Config
from bench.env import QUEUE, BenchEnv, SqlEnv
from bench.procs import Proc

LETTER = "ActivateClientNotice"


async def paced(env: BenchEnv, rate: int, seconds: float, tag: str) -> int:
    redis = await connect(env.redis_url)
    sent, t0 = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                event = ClientActivated(
                    id=uuid.uuid4(),
                    type="client.activated",
                    occurred_at=datetime.now(UTC),
                    producer="bench-latency",
                    client_id=f"lat-{tag}-{sent}",
                    payload=ClientActivatedPayload(payment_type="prepaid", service="taxi"),
                )
                await publish(redis, event)
                sent += 1
            await asyncio.sleep(max(0.0, (sent / rate) - (time.monotonic() - t0)))
    finally:
        await redis.aclose()
    return sent


#: per event, until the gateway accepted the last of its letters (a client with two addresses
#: gets two): the gateway's own sent_at (stored when the provider took the message); the
#: letter's sent_at is the moment the notifier started that send, so it would leave the call out.
#: An event counts once all its letters are sent (rows = events, compared with ``published``).
LAT_SQL = """
SELECT e.id,
       min(extract(epoch FROM e.occurred_at)) AS at,
       max(extract(epoch FROM (GREATEST(m.sent_at, l.sent_at) - e.occurred_at))) * 1000 AS ms,
       max(extract(epoch FROM (e.processed_at - e.occurred_at))) * 1000 AS stored_ms,
       max(extract(epoch FROM (l.sent_at - e.occurred_at))) * 1000 AS send_started_ms,
       max(extract(epoch FROM (m.created_at - e.occurred_at))) * 1000 AS at_gateway_ms
FROM notifier.events e
JOIN notifier.letters l ON l.event_id = e.id AND l.letter = $1
LEFT JOIN gateway.messages m ON m.idempotency_key = 'letter-' || l.id
WHERE e.client_id LIKE $2
GROUP BY e.id
HAVING bool_and(l.status = 'sent')
"""

#: where the time goes, from the publish (each in ms after ``occurred_at``; delivered letters only):
#: ``stored_ms`` = the start of the group-commit transaction that stored the event and created
#: its letter (queue wait, job start, enrichment and the batch window before it);
#: ``send_started_ms`` = the immediate send began (the letter's ``sent_at``: the rest of that
#: transaction, its commit, the immediate-send window and the wait for a free send);
#: ``at_gateway_ms`` = the start of the gateway's transaction that stored the message (claim,
#: settings and suppressions, render, row locks and the HTTP call before it); the rest is the
#: provider and the gateway marking it sent.
STAGES = ("stored_ms", "send_started_ms", "at_gateway_ms")

#: PostgreSQL checkpoints so far (by time and requested, e.g. by WAL volume): a checkpoint that
#: starts during a run makes the first write of every page a full-page image in the WAL, and
#: commits wait for it
_CHECKPOINTS_SQL = "SELECT checkpoints_timed + checkpoints_req AS n FROM pg_stat_bgwriter"
TARGET_MS = 100.0


def tail_shape(rows: Sequence[tuple[float, float]], target_ms: float = TARGET_MS) -> dict[str, Any]:
    """Is the tail steady or a few stalls? ``rows``: (publish time, latency ms) per event.
    Events over the target, the publish seconds they fall in, and the worst such second
    (seconds from the run's first event, and how many of its events were over)."""
    if not rows:
        return {"over_target": 0, "seconds_over_target": 0, "worst_second": None}
    start = min(at for at, _ in rows)
    by_second: dict[int, int] = {}
    for at, ms in rows:
        if ms > target_ms:
            second = int(at - start)
            by_second[second] = by_second.get(second, 0) + 1
    worst = max(by_second.items(), key=lambda kv: kv[1], default=None)
    return {
        "over_target": sum(by_second.values()),
        "seconds_over_target": len(by_second),
        "worst_second": {"at_s": worst[0], "events_over": worst[1]} if worst else None,
    }


#: what one run writes (each run adds ~12,000 events, ~36,000 letters and their messages)
WRITTEN = (
    "notifier.events",
    "notifier.letters",
    "notifier.attempts",
    "notifier.letter_cancellations",  # every client.activated remembers one
    "notifier.letter_states",
    "gateway.messages",
    "gateway.logged_messages",
)


def vacuum_written_tables(env: SqlEnv) -> None:
    """After the warm-up and between runs, what autovacuum does on a production server after
    such a burst: clear the dead row versions every letter and message update leaves and
    refresh the statistics the planner reads. Where autovacuum is off (as on this machine's
    PostgreSQL) the next run would otherwise pay for the previous one's dead rows, and each run
    would be slower than the last for reasons a production server does not have.

    After the warm-up it matters most (decision 0092): ``letters.reset`` TRUNCATEs the tables,
    which keeps the column statistics of the rows an earlier workload left (the drain's wide
    messages) while the table is empty, and ANALYZE of an empty table does not replace them.
    The gateway's connections then planned their prepared join on ``gateway.messages`` while it
    held ~40 rows: a sequential scan, kept as the generic plan while the table grew to 12,000
    rows during the first run (PostgreSQL CPU 2.2 ms per event against 1.2 in runs 2 and 3).
    ANALYZE of the warm-up's rows replaces the statistics and invalidates those plans."""
    for table in WRITTEN:
        if env.table_exists(table):
            env.sql(f"VACUUM ANALYZE {table}")


def one_run(
    env: BenchEnv, cfg: Config, tag: str, procs: dict[str, Proc] | None = None
) -> dict[str, Any]:
    procs = procs or {}
    checkpoints0 = int(env.sql(_CHECKPOINTS_SQL)[0]["n"])
    cpu0 = cpu.snapshot(env, procs)
    published = asyncio.run(paced(env, cfg.latency_rate, cfg.latency_seconds, tag))
    end_publish = time.monotonic()
    pattern = f"lat-{tag}-%"
    rows: list[Any] = []
    while time.monotonic() - end_publish < cfg.latency_grace:
        rows = env.sql(LAT_SQL, LETTER, pattern)
        if len(rows) >= published:
            break
        time.sleep(0.5)
    spent = cpu.cpu_spent(cpu0, cpu.snapshot(env, procs))
    checkpoints = int(env.sql(_CHECKPOINTS_SQL)[0]["n"]) - checkpoints0
    cpu_us = cpu.per_unit_us(spent, published)
    delivered = [float(r["ms"]) for r in rows]
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        vals = [float(r[stage]) for r in rows if r[stage] is not None]
        if vals:
            stages[stage] = {
                "p50": round(stats.percentile(vals, 50), 1),
                "p99": round(stats.percentile(vals, 99), 1),
            }
    missing = published - len(delivered)
    # an undelivered event has waited at least this long (lower bound)
    waited_ms = (time.monotonic() - end_publish) * 1000
    values = delivered + [waited_ms] * missing
    return {
        "value": round(stats.percentile(values, 99), 1) if values else None,
        "p50_ms": round(stats.percentile(values, 50), 1) if values else None,
        "p95_ms": round(stats.percentile(values, 95), 1) if values else None,
        "published": published,
        "delivered": len(delivered),
        "lower_bound": missing > 0,
        "stages": stages,
        "cpu_us_per_event": cpu_us,
        "tail": tail_shape([(float(r["at"]), float(r["ms"])) for r in rows]),
        "checkpoints": checkpoints,
    }


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    missing = drain.prerequisite()
    if missing:
        return stats.skipped(missing)
    # A clean slate: letters the earlier workloads left due (capped processing runs commit
    # immediate letters they never send) would be drained by this worker's per-minute cron in
    # the middle of the runs, and the measurement would be of that drain.
    letters.reset(env)
    services = drain.start_services(env)
    worker = processing.real_worker(env)
    procs = {"worker": worker, **services}
    runs: list[dict[str, Any]] = []
    try:
        processing.wait_started(env, worker)
        if cfg.latency_warmup > 0:  # not measured: start-up cost, see Config.latency_warmup
            asyncio.run(paced(env, cfg.latency_rate, cfg.latency_warmup, "warm"))
            processing.wait_idle(env)
            time.sleep(1.0)  # the jobs end at commit: let their immediate sends finish
            # what autovacuum would have done by now (it analyzes a table once 50 rows changed):
            # statistics of the rows the warm-up wrote. Without them the first run kept plans
            # made on the truncated tables and an earlier workload's statistics (decision 0092)
            vacuum_written_tables(env)
        for i in range(cfg.runs):
            tag = f"{random.getrandbits(24):06x}{i}"
            runs.append(one_run(env, cfg, tag, procs))
            # each run starts with an empty queue: drop what the worker did not reach
            client = env.redis()
            try:
                client.zremrangebyscore(QUEUE, "-inf", int(time.time() * 1000))
            finally:
                client.close()
            processing.wait_idle(env)
            vacuum_written_tables(env)
    finally:
        env.sup.stop(worker)
        drain.stop_services(env, services)
    result = stats.entry(
        unit="ms (p99)",
        runs=runs,
        baseline_key=None,
        params={
            "rate_per_s": cfg.latency_rate,
            "seconds": cfg.latency_seconds,
            "letter": LETTER,
            "publisher": "notifier_common.publisher.publish (arq enqueue)",
            "measured": "letters.sent_at - events.occurred_at",
            "grace_seconds": cfg.latency_grace,
            "warmup_seconds": cfg.latency_warmup,
            "between_runs": "VACUUM ANALYZE of the tables the runs write (also after the warm-up)",
            "target": "p99 < 100 ms at 200 events/s",
        },
    )
    for key in ("p50_ms", "p95_ms"):
        vals = [r[key] for r in runs if r[key] is not None]
        result[key] = stats.spread(vals) if vals else None
    result["lower_bound"] = any(r["lower_bound"] for r in runs)
    # steady or stalls: events over the target per run, the publish seconds they fall in, the
    # worst second; and the PostgreSQL checkpoints that began during each run
    result["tail"] = [r["tail"] for r in runs]
    result["checkpoints_during_runs"] = [r["checkpoints"] for r in runs]
    # until the letters are counted (grace included): idle time adds little CPU
    result["cpu_us_per_event"] = {
        role: stats.spread([r["cpu_us_per_event"][role] for r in runs])
        for role in runs[0]["cpu_us_per_event"]
    }
    result["stages"] = {
        stage: {
            q: stats.spread([r["stages"][stage][q] for r in runs if stage in r["stages"]])
            for q in ("p50", "p99")
        }
        for stage in STAGES
        if any(stage in r["stages"] for r in runs)
    }
    return result
