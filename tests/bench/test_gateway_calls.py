"""``bench.gateway_calls`` runs end to end (a few calls into the real gateway, against a second
gateway of the same checkout): the measure decision 0107 quotes keeps working. No timings are
checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_call_measure_runs_against_a_second_checkout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.gateway_calls", "--messages", "1,3", "--calls", "4",
         "--rounds", "2", "--against", str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1 letter(s) per call, 4 calls per round, 2 rounds:"
    assert lines[3] == "3 letter(s) per call, 4 calls per round, 2 rounds:"
    measured = [line for line in lines if "µs CPU per call" in line]
    assert len(measured) == 4
    assert all(line.strip().startswith(str(ROOT)) for line in measured)
