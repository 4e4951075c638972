"""CPU accounting of the workloads (bench/cpu.py): every process of a role counts, a process
that appeared between two snapshots counts from zero, and the per-unit figures add up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import cpu
from bench.procs import Proc

#: waits for a line on stdin, burns ``s`` seconds of CPU, says so, then idles until killed
_BURN = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < {s}: pass\n"
    "print('done', flush=True)\n"
    "time.sleep(60)\n"
)


def _burner(tmp_path: Path, name: str, seconds: float) -> Proc:
    log = (tmp_path / f"{name}.log").open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-c", _BURN.format(s=seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return Proc(name, popen, tmp_path / f"{name}.log", log)


def test_every_process_of_a_role_counts(tmp_path: Path) -> None:
    """A 1-worker drain round wakes whichever pool process takes the go first: the role's CPU
    is that of all its processes (it was the first one's only, and read 0 when the other
    drained)."""
    first, second = _burner(tmp_path, "first", 0.2), _burner(tmp_path, "second", 0.4)
    try:
        before = cpu.cpu_by_pid({"worker": [first, second]}, {})
        for p in (first, second):
            assert p.popen.stdin is not None
            p.popen.stdin.write(b"go\n")
            p.popen.stdin.flush()
        for p in (first, second):
            assert p.popen.stdout is not None
            assert p.popen.stdout.readline() == b"done\n"
        spent = cpu.cpu_spent(before, cpu.cpu_by_pid({"worker": [first, second]}, {}))
    finally:
        for p in (first, second):
            p.popen.kill()
            p.popen.communicate()  # closes its pipes
            p._log.close()
    assert set(spent) == {"worker"}
    # both processes' burns (0.6 s), not either one's alone; /proc counts whole clock ticks
    # (10 ms), so each process may read up to a tick short (this read 0.43 for 0.45 once)
    assert spent["worker"] >= 0.55


def test_a_process_that_appeared_in_between_counts_from_zero() -> None:
    before = {"postgres": {1: 2.0, 2: 5.0}, "worker": {10: 1.0}}
    after = {"postgres": {1: 2.5, 2: 5.0, 3: 0.25}, "worker": {10: 1.5, 11: 0.5}}
    assert cpu.cpu_spent(before, after) == {"postgres": 0.75, "worker": 1.0}


def test_per_unit_figures_and_their_total() -> None:
    got = cpu.per_unit_us({"worker": 0.5, "gateway": 0.25, "postgres": 0.3}, 1_000)
    assert got == {"worker": 500, "gateway": 250, "postgres": 300, "total": 1_050}
    assert cpu.per_unit_us({"worker": 0.1}, 0) == {"worker": 100_000, "total": 100_000}
