"""A tiny process supervisor for ``make run``: start children, prefix their logs, wait until they
answer, notice when one dies, and stop them all (process groups: terminate, wait, kill)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx


class ChildDied(RuntimeError):
    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} exited with code {code}")
        self.name, self.code = name, code


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready_url: str | None = None  # GET until it answers (200 unless ``any_status``)
    any_status: bool = False  # a stub without /readyz: any HTTP answer means up
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def _pump(name: str, stream: IO[bytes], out: IO[str], lock: threading.Lock) -> None:
    width = 16
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(f"{name:<{width}}| {line}\n")
            out.flush()
    stream.close()


class Supervisor:
    def __init__(self, *, out: IO[str] | None = None, stop_timeout: float = 10.0) -> None:
        self.children: list[Child] = []
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def say(self, message: str) -> None:
        with self._lock:
            self.out.write(f"{'run_local':<16}| {message}\n")
            self.out.flush()

    def start(self, child: Child) -> None:
        """Start a child in its own process group, bound to die with us (see _die_with_parent)."""
        # start_new_session: the child leads its own process group, so a terminal's Ctrl-C reaches
        # only us and we stop the children in order, and killpg reaches their own children too.
        child.process = subprocess.Popen(
            list(child.argv),
            env=dict(child.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        assert child.process.stdout is not None
        thread = threading.Thread(
            target=_pump,
            args=(child.name, child.process.stdout, self.out, self._lock),
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)
        self.children.append(child)
        self.say(f"started {child.name} (pid {child.process.pid}): {' '.join(child.argv)}")

    def check_alive(self) -> None:
        """Raise :class:`ChildDied` for the first child that has exited."""
        for child in self.children:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                raise ChildDied(child.name, code)

    def wait_ready(self, *, timeout: float = 60.0, stop: threading.Event | None = None) -> None:
        pending = [c for c in self.children if c.ready_url]
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as http:
            while pending:
                if stop is not None and stop.is_set():
                    return
                self.check_alive()
                for child in list(pending):
                    assert child.ready_url is not None
                    try:
                        status = http.get(child.ready_url).status_code
                    except httpx.TransportError:
                        continue
                    if status == 200 or (child.any_status and status < 500):
                        self.say(f"{child.name} is ready ({child.ready_url})")
                        pending.remove(child)
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise TimeoutError(f"not ready after {timeout:.0f} s: {names}")
                time.sleep(0.1)

    def watch(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set; raise :class:`ChildDied` if a child exits first."""
        while not stop.wait(0.2):
            self.check_alive()

    def stop_all(self) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
        live = [c for c in self.children if c.process is not None]
        for child in reversed(live):
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in reversed(live):
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in {self.stop_timeout:.0f} s; killing it")
            # whatever is left in the group (the child or its own children) is killed
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        for thread in self._threads:
            thread.join(timeout=2)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    if child.pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


_PR_SET_PDEATHSIG = 1
# resolved once at import, before any thread exists: the pre-exec hook only calls it
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the supervisor dies, even by SIGKILL.

    Ctrl-C and SIGTERM are handled by stopping every child in order; this covers the case where
    the supervisor itself is killed outright, which would otherwise orphan the whole stack.
    Linux only; elsewhere a no-op.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
