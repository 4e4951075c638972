"""``intake``: POST /v1/events, batches of 100, 16 concurrent keep-alive clients, against the real
notifier-api (1 uvicorn process). Value: events/s accepted **and durable** (jobs counted in the
Redis queue zset afterwards). Baseline: a bare FastAPI 202 route (bench/bare_app.py) under the
same uvicorn settings and the same load generator, in events/s (requests x batch)."""

from __future__ import annotations

import sys
from typing import Any

from bench import loadgen, stats
from bench.config import Config
from bench.env import BenchEnv
from bench.procs import cpu_seconds, free_port, script, wait_http


def start_api(env: BenchEnv) -> tuple[Any, int]:
    port = free_port()
    proc = env.sup.start(
        "api",
        [script("notifier"), "api", "--port", str(port), "--workers", "1"],
        env=env.notifier_env(NOTIFIER_API_PORT=str(port)),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, port


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    api, api_port = start_api(env)
    bare_port = free_port()
    bare = env.sup.start(
        "bare-202", [sys.executable, "-m", "bench.bare_app", "--port", str(bare_port)], env={}
    )
    wait_http(f"http://127.0.0.1:{bare_port}/healthz", bare)

    def load(port: int, duration: float = cfg.intake_seconds) -> dict[str, Any]:
        return loadgen.run(
            f"http://127.0.0.1:{port}/v1/events",
            token=env.token,
            batch=cfg.intake_batch,
            connections=cfg.intake_clients,
            duration=duration,
            work_dir=env.work_dir,
        )

    runs: list[dict[str, Any]] = []
    try:
        # warm both servers (imports, pools, JIT-less caches) before measuring
        load(api_port, 1)
        load(bare_port, 1)
        for _ in range(cfg.runs):
            base = load(bare_port)
            env.flush_redis()
            cpu0 = cpu_seconds(api.pid)
            real = load(api_port)
            cpu = cpu_seconds(api.pid) - cpu0
            durable = env.queue_len()
            accepted = (real["requests"] - real["non_2xx"]) * cfg.intake_batch
            runs.append(
                {
                    # responses still in flight when the clock stopped are not counted
                    "value": round(min(accepted, durable) / real["seconds"], 1),
                    "accepted_per_s": round(accepted / real["seconds"], 1),
                    "durable_jobs": durable,
                    # CPU the api spent per event it enqueued (responses still in flight when the
                    # clock stopped included): steadier than the rate on a busy box
                    "api_cpu_us_per_event": round(1e6 * cpu / max(durable, accepted, 1), 1),
                    "requests": real["requests"],
                    "non_2xx": real["non_2xx"],
                    "socket_errors": real["socket_errors"],
                    "p50_ms": real["p50_ms"],
                    "p99_ms": real["p99_ms"],
                    "baseline": round(
                        (base["requests"] - base["non_2xx"]) * cfg.intake_batch / base["seconds"],
                        1,
                    ),
                    "baseline_p99_ms": base["p99_ms"],
                }
            )
            env.flush_redis()
    finally:
        env.sup.stop(api)
        env.sup.stop(bare)
    return stats.entry(
        unit="events/s",
        runs=runs,
        params={
            "batch": cfg.intake_batch,
            "clients": cfg.intake_clients,
            "seconds": cfg.intake_seconds,
            "uvicorn_processes": 1,
            "load_generator": loadgen.which(),
            "log_level": env.log_level,
            "target": ">= 10000 events/s",
        },
        extra={"api_cpu_us_per_event": stats.spread([r["api_cpu_us_per_event"] for r in runs])},
    )
