"""``bench.http_client`` runs end to end (a few GETs against the real stub): the measure decision
0106 quotes keeps working. No timings are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_get_measure_runs_every_way_against_the_stub() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_client", "--requests", "40", "--concurrency", "4",
         "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "40 GETs, 4 in flight, median of 1:"
    assert [line.split()[0] for line in lines[1:]] == ["direct", "httpx", "httpcore"]
    assert all("µs CPU per GET" in line for line in lines[1:])
