"""Processes the benchmark starts: each in its own process group, always stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """A console script of this virtualenv (``notifier``, ``gateway``, ``uvicorn``)."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {BIN}")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    role: str  # "api", "worker", "gateway", ... (memory is reported per role)
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts processes in new sessions; ``stop_all`` kills every group it started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self.sampler = RssSampler()
        self._seq = 0
        #: the workload running now; names each started process in the per-process peaks
        self.workload = ""

    def start(
        self,
        role: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        sample: bool = True,
        cwd: Path | None = None,
    ) -> Proc:
        self._seq += 1
        log_path = self.log_dir / f"{self._seq:02d}-{role}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(argv),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
        proc = Proc(role, popen, log_path, log)
        self.procs.append(proc)
        if sample:
            label = f"{self._seq:02d}-{role}" + (f" ({self.workload})" if self.workload else "")
            self.sampler.watch(role, popen.pid, label=label)
        return proc

    def stop(self, proc: Proc, *, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns the exit code."""
        self.sampler.unwatch(proc.pid)
        if proc.alive():
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers in the group (uvicorn children)
        with contextlib.suppress(OSError):
            proc._log.close()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.popen.returncode

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc)
        self.sampler.stop()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_http(url: str, proc: Proc, *, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers < 500 (or raise with the process log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.role} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.role} not ready at {url}:\n{proc.tail()}")


def wait_port(port: int, proc: Proc, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.role} exited ({proc.popen.returncode}):\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{proc.role} not listening on {port}:\n{proc.tail()}")


class RssSampler:
    """A thread sampling the RSS (process + children) of watched pids every ``interval`` s.

    Keeps, per role, the peak and every sample's (t, MB) so callers can read RSS at a moment.

    A process's children are looked up again only every ``children_every`` s: psutil finds them
    by reading the ``stat`` file of every process on the machine, and doing that for each
    watched pid at every sample took ~2 % of a core from the processes being measured. The
    watched services start their children (uvicorn's workers) once, at start-up.
    """

    def __init__(self, interval: float = 0.2, children_every: float = 2.0) -> None:
        self.children_every = children_every
        #: pid -> (when its children were listed, the children)
        self._children: dict[int, tuple[float, list[psutil.Process]]] = {}
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self.hwm: dict[str, float] = {}  # the kernel's peak RSS (VmHWM): spikes between samples
        #: per started process ("07-worker (drain)": its log file and the workload that started
        #: it): the larger of its sampled RSS and VmHWM, so a role's peak can be traced to a run
        self.proc_peaks: dict[str, float] = {}
        self._labels: dict[int, str] = {}
        self.series: dict[int, list[tuple[float, float]]] = {}
        self._roles: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, role: str, pid: int, *, label: str = "") -> None:
        with self._lock:
            self._roles[pid] = role
            self._labels[pid] = label or f"{role} {pid}"
            self.series.setdefault(pid, [])
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
            self._thread.start()

    def unwatch(self, pid: int) -> None:
        self.sample_now(pid)
        with self._lock:
            self._roles.pop(pid, None)
            self._children.pop(pid, None)

    def rss_mb(self, pid: int) -> float | None:
        try:
            p = psutil.Process(pid)
            total = p.memory_info().rss
            for child in self.children(p):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return None
        return total / 1_048_576

    def children(self, process: psutil.Process) -> list[psutil.Process]:
        """``process.children(recursive=True)``, listed again after ``children_every`` s."""
        now = time.monotonic()
        listed = self._children.get(process.pid)
        if listed is None or now - listed[0] >= self.children_every:
            listed = (now, process.children(recursive=True))
            self._children[process.pid] = listed
        return listed[1]

    def sample_now(self, pid: int) -> float | None:
        with self._lock:
            role = self._roles.get(pid)
        if role is None:
            return None
        mb = self.rss_mb(pid)
        hwm = hwm_mb(pid)
        if mb is not None:
            with self._lock:
                self.series.setdefault(pid, []).append((time.monotonic(), mb))
                self.peaks[role] = max(self.peaks.get(role, 0.0), mb)
                if hwm is not None:
                    self.hwm[role] = max(self.hwm.get(role, 0.0), hwm)
                label = self._labels.get(pid, role)
                self.proc_peaks[label] = max(self.proc_peaks.get(label, 0.0), mb, hwm or 0.0)
        return mb

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                pids = list(self._roles)
            for pid in pids:
                self.sample_now(pid)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


def hwm_mb(pid: int) -> float | None:
    """VmHWM of a process (its own peak resident set, as the kernel counts it), in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its live children (psutil).

    On a shared machine a rate swings with the neighbours' load; the CPU a process spent per unit
    of work does much less, so the workloads report it beside the rate."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0
