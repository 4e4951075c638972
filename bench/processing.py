"""``processing``: 50,000 queued corp events (bench/corpus.py mix) handled by one real
``notifier worker --burst`` with enrichment from the local upstream stub. Value: events/s;
letters created/s reported beside it. Baseline: the same jobs handled by an arq worker with the
same settings whose handler is a no-op (bench/noop_worker.py).

Rates run from the first finished job (process start-up is not counted) until every job finished
or ``processing_cap`` seconds passed: finished jobs are read from the queue zset for the no-op
worker (arq removes a job when it finishes) and from notifier.events for the real one."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from bench import corpus, gateway, queue, stats, upstream
from bench.config import Config
from bench.env import QUEUE, BenchEnv, as_int
from bench.procs import Proc, cpu_seconds, script

NOOP_QUEUE = "bench:noop"


def measure(
    proc: Proc, total: int, progress: Callable[[], int], *, cap: float, poll: float
) -> dict[str, float]:
    """Rate of ``progress()`` (jobs finished) from the first finished job until all ``total`` are
    finished or ``cap`` seconds have passed (the product may be far slower than the baseline)."""
    t_first = done_first = None
    deadline = time.monotonic() + cap + 120  # start-up allowance
    while True:
        done = progress()
        now = time.monotonic()
        if t_first is None and done > 0:
            t_first, done_first = now, done
            deadline = now + cap
        if done >= total or now >= deadline:
            break
        if not proc.alive():
            raise RuntimeError(f"{proc.role} exited with {total - done} jobs left:\n{proc.tail()}")
        time.sleep(poll)
    if t_first is None or done_first is None:
        raise TimeoutError(f"{proc.role} finished no job")
    elapsed = max(now - t_first, 1e-6)
    return {
        "rate": (done - done_first) / elapsed,
        "seconds": elapsed,
        "finished": float(done),
        "capped": float(done < total),
    }


def wait_idle(env: BenchEnv, *, timeout: float = 60.0) -> None:
    """Wait until no job of the real worker is in progress (arq's in-progress keys)."""
    client = env.redis()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not any(True for _ in client.scan_iter("arq:in-progress:event:*", count=1000)):
                return
            time.sleep(0.2)
    finally:
        client.close()


def real_worker(env: BenchEnv) -> Proc:
    """``notifier worker`` pointed at the current gateway and stub. Never shared: its per-minute
    cron drain would join the drain workloads' measurements."""
    return env.sup.start("worker", [script("notifier"), "worker"], env=env.notifier_env())


def wait_started(env: BenchEnv, worker: Proc, *, timeout: float = 90.0) -> None:
    """Until a freshly started worker polls its queue (arq writes ``<queue>:health-check`` when
    its loop starts); a worker that has run for a while (shared) is ready."""
    if time.monotonic() - worker.started > 30:
        return
    client = env.redis()
    deadline = time.monotonic() + timeout
    try:
        while not client.exists(f"{QUEUE}:health-check"):
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not start polling")
            time.sleep(0.2)
    finally:
        client.close()


def reset(env: BenchEnv) -> None:
    env.flush_redis()
    tables = ["notifier.events"]
    if env.table_exists("notifier.letters"):
        tables.append("notifier.letters")
    env.sql(f"TRUNCATE {', '.join(tables)} CASCADE")


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    stub = upstream.start(env)
    gw = gateway.start(env, providers={"log": {"kind": "log"}}) if gateway.available() else None
    bodies = corpus.bodies(cfg.processing_events, seed=21)
    total = len(bodies)

    def db_done() -> int:
        return int(
            env.sql("SELECT count(*) FROM notifier.events WHERE status <> 'processing'")[0][0]
        )

    runs: list[dict[str, Any]] = []
    client = env.redis()
    # both workers run for the whole workload (start-up once), each on its own queue
    noop = env.sup.start(
        "noop-worker",
        [sys.executable, "-m", "bench.noop_worker"],
        env=env.notifier_env(NOTIFIER_QUEUE_NAME=NOOP_QUEUE),
    )
    worker = real_worker(env)
    try:
        for _ in range(cfg.runs):
            reset(env)
            score = queue.fill(client, bodies, queue=NOOP_QUEUE)

            def queue_done(score: int = score) -> int:
                return total - as_int(client.zcount(NOOP_QUEUE, "-inf", score))

            base = measure(noop, total, queue_done, cap=cfg.processing_cap, poll=0.01)
            client.delete(NOOP_QUEUE)

            reset(env)
            score = queue.fill(client, bodies)
            cpu0 = cpu_seconds(worker.pid)
            real = measure(worker, total, db_done, cap=cfg.processing_cap, poll=0.1)
            cpu = cpu_seconds(worker.pid) - cpu0
            # what is left is not measured: drop it so the next run starts empty
            client.zremrangebyscore(QUEUE, "-inf", score)
            wait_idle(env)
            outcome = {
                str(r["status"]): int(r["n"])
                for r in env.sql(
                    "SELECT status::text, count(*) AS n FROM notifier.events GROUP BY 1"
                )
            }
            letters = None
            if env.table_exists("notifier.letters"):
                letters = int(env.sql("SELECT count(*) FROM notifier.letters")[0][0])
            runs.append(
                {
                    "value": round(real["rate"], 1),
                    "finished": int(real["finished"]),
                    "of": total,
                    "seconds": round(real["seconds"], 1),
                    "letters_created": letters,
                    "letters_per_s": None
                    if letters is None
                    else round(letters * real["rate"] / max(real["finished"], 1), 1),
                    "events": outcome,
                    # CPU the worker spent per finished event: steadier than the rate
                    "worker_cpu_us_per_event": round(1e6 * cpu / max(real["finished"], 1), 1),
                    "baseline": round(base["rate"], 1),
                    "baseline_seconds": round(base["seconds"], 2),
                }
            )
    finally:
        env.sup.stop(noop)
        env.sup.stop(worker)
        if stub is not None:
            env.release(stub)
        client.close()
        if gw is not None:
            gateway.stop(env, gw)
    letter_rates = [r["letters_per_s"] for r in runs if r["letters_per_s"] is not None]
    return stats.entry(
        unit="events/s",
        runs=runs,
        params={
            "events": len(bodies),
            "mix": corpus.MIX,
            "workers": 1,
            "cap_seconds": cfg.processing_cap,
            "upstream_stub": "deploy/upstream_stub.py" if stub else "absent",
            "gateway": "gateway api, log provider" if gw else "absent",
            "log_level": env.log_level,
            "target": ">= 50% of the no-op rate",
        },
        extra={
            "letters_per_s": stats.spread(letter_rates) if letter_rates else None,
            "worker_cpu_us_per_event": stats.spread([r["worker_cpu_us_per_event"] for r in runs]),
            "letters_note": None
            if letter_rates
            else "notifier.letters does not exist yet: no letters can be created",
        },
    )
