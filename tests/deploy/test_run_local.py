"""``make run`` end to end: run_local starts everything, serves an event, and Ctrl-C leaves no
process behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from notifier_common.devservices import Services, with_database

from tests.factories import event_body

ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"dev token \(all scopes\): (ntf_\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin(services: Services, sql: str) -> None:
    conn = await asyncpg.connect(services.admin_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def scratch_database(services: Services) -> Iterator[str]:
    """A database name run_local creates (and we drop)."""
    name = f"ntf_runlocal_{uuid.uuid4().hex[:10]}"
    yield with_database(services.database_url, name)
    asyncio.run(admin(services, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Output:
    """Reads a process's stdout in a thread (so the pipe never fills) and finds lines in it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if m := pattern.search(line):
                return m
        raise AssertionError(f"{pattern.pattern!r} not printed; output:\n{self.rest()}")

    def rest(self) -> str:
        self.thread.join(timeout=5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def start_run_local(
    tmp_path: Path, services: Services, scratch_database: str
) -> tuple[subprocess.Popen[str], Output, int, int]:
    api, gateway, upstream, metrics = (free_port() for _ in range(4))
    env = dict(os.environ) | {
        "NOTIFIER_DATABASE_URL": scratch_database,
        "NOTIFIER_REDIS_URL": with_database(services.redis_url, "15"),
        "NOTIFIER_QUEUE_NAME": f"notifier:runlocal:{uuid.uuid4().hex[:8]}",
    }
    args = ["--data-dir", str(tmp_path / "local"), "--api-port", str(api)]
    args += ["--gateway-port", str(gateway), "--upstream-port", str(upstream)]
    args += ["--metrics-port", str(metrics), "--ready-timeout", "120"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.run_local", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, Output(proc), api, gateway


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_local_serves_events_and_ctrl_c_leaves_no_process(
    tmp_path: Path, services: Services, scratch_database: str
) -> None:
    proc, out, api, gateway = start_run_local(tmp_path, services, scratch_database)
    descendants: list[psutil.Process] = []
    try:
        token = out.wait_for(TOKEN, timeout=130).group(1)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 2  # notifier-api and notifier-worker at least

        assert httpx.get(f"http://127.0.0.1:{api}/readyz").status_code == 200
        body = event_body()
        r = httpx.post(
            f"http://127.0.0.1:{api}/v1/events",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["results"][0]["status"] in {"queued", "duplicate"}
        shown = httpx.get(
            f"http://127.0.0.1:{api}/v1/events/{body['id']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert shown.status_code == 200

        if "gateway is ready" in "".join(out.seen):
            # the seeded token the notifier uses at the gateway works there
            tokens = json.loads((tmp_path / "local" / "dev-tokens.json").read_text())
            r = httpx.get(
                f"http://127.0.0.1:{gateway}/v1/messages",
                headers={"Authorization": f"Bearer {tokens['gateway:notifier']}"},
            )
            assert r.status_code == 200, r.text

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, out.rest()
    finally:
        if proc.poll() is None:  # a failed assertion: still stop the stack, never leak it
            survivors = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for p in survivors:
                if p.is_running():
                    p.kill()
    text = out.rest()
    assert "stopped" in text
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {alive}\n{text}"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_children_die_with_run_local_even_when_it_is_killed(
    tmp_path: Path, services: Services, scratch_database: str
) -> None:
    proc, out, _, _ = start_run_local(tmp_path, services, scratch_database)
    descendants: list[psutil.Process] = []
    try:
        out.wait_for(TOKEN, timeout=130)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 2
        proc.kill()  # SIGKILL: no handler runs; the children's parent-death signal must fire
        proc.wait()
        _gone, alive = psutil.wait_procs(descendants, timeout=30)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"left behind: {alive}"
    finally:
        for p in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
