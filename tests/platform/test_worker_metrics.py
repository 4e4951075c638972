"""The worker serves Prometheus metrics on its own port (``worker_metrics_port``)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
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
