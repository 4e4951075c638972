"""The benchmark's world: PostgreSQL/Redis found or started like ``make run``, a scratch database
created, migrated and dropped, a scratch Redis db flushed, and the env vars that point the real
processes at them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import redis
from notifier_common.devservices import (
    Services,
    ensure_services,
    to_libpq,
    with_database,
)

from bench.procs import Proc, Supervisor

ROOT = Path(__file__).resolve().parents[1]
REDIS_DB = 15  # tests use 1 + xdist worker index
LOCK_PATH = Path(tempfile.gettempdir()) / "notifier-bench.lock"
QUEUE = "notifier:queue"


def as_int(value: Any) -> int:
    """A sync redis-py reply as int (its stubs type replies as ``Awaitable | Any``)."""
    return int(value or 0)


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class BenchEnv:
    services: Services
    database: str
    database_url: str  # SQLAlchemy URL (asyncpg driver)
    redis_url: str
    work_dir: Path
    sup: Supervisor
    log_level: str = "INFO"
    token: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    ports_meta: dict[str, str] = field(default_factory=dict)  # e.g. the gateway token
    # processes the workloads share (the stub, the log gateway): started once, stopped at the end
    shared: dict[str, tuple[Proc, dict[str, int]]] = field(default_factory=dict)

    def reuse(self, key: str) -> Proc | None:
        """The running process shared under ``key`` (its ports put back in ``ports``), or None."""
        got = self.shared.get(key)
        if got is None or not got[0].alive():
            self.shared.pop(key, None)
            return None
        self.ports.update(got[1])
        return got[0]

    def share(self, key: str, proc: Proc, ports: dict[str, int] | None = None) -> Proc:
        """Keep ``proc`` for the next workloads (process start-up is seconds on this box)."""
        self.shared[key] = (proc, dict(ports or {}))
        return proc

    def release(self, proc: Proc) -> None:
        """Stop a process a workload started, unless it is shared (then it runs to the end)."""
        if not any(p is proc for p, _ in self.shared.values()):
            self.sup.stop(proc)

    @property
    def dsn(self) -> str:
        """libpq DSN of the bench database (asyncpg.connect)."""
        return to_libpq(self.database_url)

    def notifier_env(self, **extra: str) -> dict[str, str]:
        env = {
            "NOTIFIER_ENV": "development",
            "NOTIFIER_DATABASE_URL": self.database_url,
            "NOTIFIER_REDIS_URL": self.redis_url,
            "NOTIFIER_QUEUE_NAME": QUEUE,
            "NOTIFIER_WORKER_METRICS_PORT": "0",
            "NOTIFIER_LOG_LEVEL": self.log_level,
            "NOTIFIER_LOG_JSON": "true",
            "PYTHONUNBUFFERED": "1",
        }
        if "gateway" in self.ports:
            env["NOTIFIER_GATEWAY_URL"] = f"http://127.0.0.1:{self.ports['gateway']}"
            env["NOTIFIER_GATEWAY_TOKEN"] = self.ports_meta.get("gateway_token", "")
        if "upstream" in self.ports:
            upstream = f"http://127.0.0.1:{self.ports['upstream']}"
            env["NOTIFIER_CLIENTS_SERVICE_URL"] = upstream
            env["NOTIFIER_BILLING_SERVICE_URL"] = upstream
        env.update(extra)
        return env

    def gateway_env(self, **extra: str) -> dict[str, str]:
        env = {
            "GATEWAY_ENV": "development",
            "GATEWAY_DATABASE_URL": self.database_url,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_LOG_LEVEL": self.log_level,
            "GATEWAY_LOG_JSON": "true",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    # ---- helpers used by the workloads ------------------------------------------------------

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def flush_redis(self) -> None:
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    def queue_len(self) -> int:
        client = self.redis()
        try:
            return as_int(client.zcard(QUEUE))
        finally:
            client.close()

    def sql(self, query: str, *args: Any) -> Any:
        """Run one statement on a fresh connection; returns fetch() rows."""
        return Database(self.dsn).sql(query, *args)

    def table_exists(self, qualified: str) -> bool:
        return Database(self.dsn).table_exists(qualified)


class SqlEnv(Protocol):
    """What upkeep between measurements needs of a ``BenchEnv``: its database."""

    def sql(self, query: str, *args: Any) -> Any: ...

    def table_exists(self, qualified: str) -> bool: ...


@dataclass(frozen=True)
class Database:
    """A database by its libpq DSN, one fresh connection per statement: the bench's own reads
    and upkeep (a ``BenchEnv``'s, or the test database's)."""

    dsn: str

    def sql(self, query: str, *args: Any) -> Any:
        """Run one statement; returns fetch() rows."""

        async def go() -> Any:
            conn = await asyncpg.connect(self.dsn)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return asyncio.run(go())

    def table_exists(self, qualified: str) -> bool:
        rows = self.sql("SELECT to_regclass($1) IS NOT NULL AS ok", qualified)
        return bool(rows[0]["ok"])


async def _admin(services: Services, *statements: str) -> None:
    conn = await asyncpg.connect(services.admin_dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def exclusive(work_dir: Path) -> Any:
    """One bench run at a time on this machine: they share Redis db 15 and the log folder, and
    two runs would measure each other anyway. The lock is an ``flock`` on a machine-wide path (two
    checkouts share Redis too): it dies with the process.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with LOCK_PATH.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another bench run holds {LOCK_PATH}; waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def bench_env(*, log_level: str = "INFO", keep_db: bool = False, revision: str = "head") -> Any:
    """Yield a ready :class:`BenchEnv`; on exit stop every process, drop the db, flush Redis."""
    work_dir = ROOT / ".local" / "bench"
    with exclusive(work_dir):
        yield from _bench_env(work_dir, log_level=log_level, keep_db=keep_db, revision=revision)


def _bench_env(work_dir: Path, *, log_level: str, keep_db: bool, revision: str) -> Any:
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    services = ensure_services(
        database_url=os.environ.get(
            "NOTIFIER_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/notifier"
        ),
        redis_url=os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        data_dir=ROOT / ".local",
        create_db=False,
    )
    database = f"notifier_bench_{os.getpid()}"
    database_url = with_database(services.database_url, database)
    redis_url = with_database(services.redis_url, str(REDIS_DB))
    asyncio.run(
        _admin(
            services,
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
            f'CREATE DATABASE "{database}"',
        )
    )
    sup = Supervisor(log_dir)
    env = BenchEnv(services, database, database_url, redis_url, work_dir, sup, log_level)
    try:
        from notifier.migrate import upgrade

        upgrade(database_url, revision)
        env.flush_redis()
        from notifier.auth.tokens import create_token

        env.token = asyncio.run(
            create_token(database_url, name="bench", scopes=["events:write", "letters:read"])
        )
        yield env
    finally:
        sup.stop_all()
        with contextlib.suppress(Exception):
            env.flush_redis()
        if not keep_db:
            with contextlib.suppress(Exception):
                asyncio.run(_admin(services, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def machine_info(env: BenchEnv) -> dict[str, Any]:
    pg = env.sql("SHOW server_version")[0][0]
    client = env.redis()
    try:
        info: Any = client.info("server")
        redis_version = info.get("redis_version")
    finally:
        client.close()
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": pg,
        "postgres_source": env.services.postgres_source,
        "redis": redis_version,
        "redis_source": env.services.redis_source,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def box_speed_ms(iterations: int = 2_000_000) -> float:
    """Milliseconds this process takes for a fixed pure-Python loop: how fast the box is at this
    moment. On a shared machine the same loop took 0.64 s and 0.96 s minutes apart, and every
    process's CPU per unit of work moved with it; recorded before each workload so a figure can
    be read against the speed of the box it was measured on."""
    start = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i
    if total != iterations * (iterations - 1) // 2:  # pragma: no cover - keeps the loop honest
        raise RuntimeError("box_speed_ms: arithmetic is broken")
    return round((time.perf_counter() - start) * 1000, 1)


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
