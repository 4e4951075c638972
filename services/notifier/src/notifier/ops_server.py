"""The worker's ops port: ``/metrics``, ``/healthz`` and ``/readyz``, like every HTTP service
(decision 0006; readiness added by decision 0096).

prometheus-client's own server answered every path with the metrics, so ``/readyz`` said 200
whatever the worker's state. This one is the same threaded WSGI server with prometheus-client's
WSGI app for ``/metrics`` (content negotiation and gzip as before) and:

- ``/healthz``: 200 while the process serves HTTP (liveness);
- ``/readyz``: 200 while the worker's event loop is turning — a :class:`LoopHeartbeat` it beats
  every second is fresh — else 503 with how long it has been stalled (a loop blocked by a
  runaway job handles nothing, though the process is alive);
- anything else: 404.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

StartResponse = Callable[..., Any]


class LoopHeartbeat:
    """A timestamp the event loop refreshes every ``interval`` seconds; read from any thread."""

    def __init__(self, *, interval: float = 1.0, stale_after: float = 10.0) -> None:
        self.interval = interval
        self.stale_after = stale_after
        self.last: float | None = None  # monotonic; None until the loop beat once
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.last = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _beat(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(self.interval)

    def stalled_for(self) -> float | None:
        """Seconds since the last beat when that is more than ``stale_after`` (or the loop never
        beat: ``inf``), else None."""
        if self.last is None:
            return float("inf")
        since = time.monotonic() - self.last
        return since if since > self.stale_after else None


def ops_app(heartbeat: LoopHeartbeat) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            stalled = heartbeat.stalled_for()
            if stalled is None:
                return _json(start_response, "200 OK", {"status": "ready"})
            detail = "the worker's event loop has not run" + (
                "" if stalled == float("inf") else f" for {stalled:.0f} s"
            )
            return _json(start_response, "503 Service Unavailable", {"status": detail})
        return _json(start_response, "404 Not Found", {"detail": "Not Found"})

    return app


def _json(start_response: StartResponse, status: str, body: dict[str, str]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


def start_ops_server(port: int, *, addr: str, heartbeat: LoopHeartbeat) -> WSGIServer:
    """Serve ``ops_app`` on ``addr:port`` from a daemon thread (``OSError`` if the port is
    taken); ``shutdown()`` the returned server to stop it."""
    server = make_server(
        addr, port, ops_app(heartbeat), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="worker-ops", daemon=True).start()
    return server
