"""``drain_smtp``: N due letters drained (real cron function, 2 worker processes) through the real
gateway's ``smtp`` provider (pool of ``pool_size`` persistent connections) into a local aiosmtpd
sink that counts messages (bench/smtp_sink.py). Value: messages/s counted by the sink. Baseline:
aiosmtplib alone sending the same raw messages (kept by the sink) to the same sink over the same
number of connections (bench/smtp_baseline.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench import drain, letters, stats
from bench.config import Config
from bench.env import BenchEnv, as_int
from bench.procs import Proc, free_port, wait_port
from bench.smtp_sink import COUNT_KEY

POOL = 4


def baseline(env: BenchEnv, port: int, count: int, keep: str) -> float:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.smtp_baseline",
            "--port",
            str(port),
            "--count",
            str(count),
            "--connections",
            str(POOL),
            "--messages",
            keep,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"smtp baseline failed: {proc.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return float(data["sent"]) / float(data["seconds"])


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    missing = drain.prerequisite()
    if missing:
        return stats.skipped(missing)
    port = free_port()
    keep = env.work_dir / "smtp-messages"
    for old in keep.glob("*.eml") if keep.exists() else []:
        old.unlink()
    sink = env.sup.start(
        "smtp-sink",
        [
            sys.executable,
            "-m",
            "bench.smtp_sink",
            "--port",
            str(port),
            "--redis",
            env.redis_url,
            "--keep",
            str(keep),
        ],
        env={},
    )
    wait_port(port, sink)
    provider = {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "start_tls": False,
        "from_address": "bench@example.com",
        "pool_size": POOL,
    }
    services: dict[str, Proc] = {}
    runs: list[dict[str, Any]] = []
    client = env.redis()
    try:
        services = drain.start_services(env, providers={"smtp": provider})
        tpls = drain.sendable_templates(env)
        n = cfg.drain_smtp_letters
        pool = drain.DrainPool(env, 2)
        try:
            for _ in range(cfg.runs):
                letters.reset(env)
                letters.copy_due(env, tpls, n)
                env.sql("VACUUM ANALYZE notifier.letters")
                client.set(COUNT_KEY, 0)
                result = pool.round(
                    expected=n,
                    cap=cfg.drain_cap,
                    progress=lambda: as_int(client.get(COUNT_KEY)),
                    services=services,
                )
                counted = as_int(client.get(COUNT_KEY))
                client.set(COUNT_KEY, 0)
                base = baseline(env, port, min(n, 3000), str(keep))
                runs.append(
                    {
                        # messages the sink accepted per second of the drain window
                        "value": round(result["final"] / max(result["seconds"], 1e-6), 1),
                        "sink_counted_after": counted,
                        "drain": result,
                        "baseline": round(base, 1),
                        "baseline_sink_counted": as_int(client.get(COUNT_KEY)),
                    }
                )
        finally:
            pool.close()
    finally:
        client.close()
        drain.stop_services(env, services)
        env.sup.stop(sink)
        letters.reset(env)
    return stats.entry(
        unit="messages/s",
        runs=runs,
        params={
            "letters": cfg.drain_smtp_letters,
            "workers": 2,
            "smtp_connections": POOL,
            "cap_seconds": cfg.drain_cap,
            "baseline_messages": min(cfg.drain_smtp_letters, 3000),
            "target": ">= 75% of aiosmtplib alone",
        },
    )
