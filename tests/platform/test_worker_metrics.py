"""The worker's ops port (``worker_metrics_port``): Prometheus metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import httpx
from notifier.ops_server import LoopHeartbeat, start_ops_server
from notifier.settings import NotifierSettings
from notifier.worker import shutdown, startup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_startup_serves_metrics_on_its_port(settings: NotifierSettings) -> None:
    port = free_port()
    ctx: dict[str, Any] = {"settings": settings.model_copy(update={"worker_metrics_port": port})}
    await startup(ctx)
    try:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        assert "notifier_job_duration_seconds" in r.text
        assert "notifier_events_total" in r.text
    finally:
        await shutdown(ctx)


async def test_worker_ops_port_answers_health_and_readiness(settings: NotifierSettings) -> None:
    """prometheus-client's server answered every path with the metrics (a /readyz that could
    never fail); the ops port now serves /healthz, /readyz and 404 for the rest."""
    port = free_port()
    ctx: dict[str, Any] = {"settings": settings.model_copy(update={"worker_metrics_port": port})}
    await startup(ctx)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health, ready, other = [await http.get(p) for p in ("/healthz", "/readyz", "/nope")]
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert other.status_code == 404
    finally:
        await shutdown(ctx)
    with socket.socket() as s:  # shutdown closed the port: a restarted worker can take it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
        s.bind(("127.0.0.1", port))
        s.listen()


async def test_readyz_is_503_while_the_event_loop_is_blocked() -> None:
    heartbeat = LoopHeartbeat(interval=0.05, stale_after=0.3)
    port = free_port()
    server = start_ops_server(port, addr="127.0.0.1", heartbeat=heartbeat)
    url = f"http://127.0.0.1:{port}/readyz"
    answers: list[tuple[int, str]] = []

    def probe() -> None:
        time.sleep(0.5)
        answers.append(_get(url))

    try:
        assert _get(url)[0] == 503  # never beat: not ready
        heartbeat.start()
        await asyncio.sleep(0.1)
        assert _get(url) == (200, '{"status": "ready"}')
        prober = threading.Thread(target=probe)
        prober.start()
        time.sleep(0.8)  # noqa: ASYNC251 - a job blocking the loop: no beat for 0.8 s
        prober.join()
        await asyncio.sleep(0.1)  # the loop turns again
        assert _get(url)[0] == 200
    finally:
        await heartbeat.stop()
        server.shutdown()
        server.server_close()
    [(status, body)] = answers
    assert status == 503
    assert "has not run for" in body


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()
