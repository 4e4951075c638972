"""The REAL gateway app served over TCP from a thread of its own, for tests whose notifier side
makes its own HTTP client to ``NOTIFIER_GATEWAY_URL`` (the API's shared client, the CLI's)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from tests.gateway.conftest import log_gateway_settings

NOTIFIER_SCOPES = ("messages:write", "messages:read", "admin")  # what the seed gives it


@contextmanager
def serving_gateway(database_url: str, redis_url: str) -> Iterator[str]:
    """The gateway's base URL while it serves (its own event loop, in a thread)."""
    from gateway.app import create_app

    app = create_app(log_gateway_settings(database_url, redis_url, db_pool_size=2))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "the gateway did not start"
            assert time.monotonic() < deadline, "the gateway did not start in 10 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def refusing_url() -> Iterator[str]:
    """A local URL whose port is bound but never listened on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
