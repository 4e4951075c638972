"""``bench.gateway_calls`` runs end to end (a few calls into the real gateway, against a second
gateway of the same checkout): the measure decision 0107 quotes keeps working. No timings are
checked."""

from __future__ import annotations

from tests.bench.tool import ROOT, run_tool


def test_the_call_measure_runs_against_a_second_checkout() -> None:
    lines = run_tool(
        "bench.gateway_calls", "--messages", "1,3", "--calls", "4", "--rounds", "2",
        "--against", str(ROOT), timeout=180,
    )  # fmt: skip
    assert lines[0] == "1 letter(s) per call, 4 calls per round, 2 rounds:"
    assert lines[3] == "3 letter(s) per call, 4 calls per round, 2 rounds:"
    measured = [line for line in lines if "µs CPU per call" in line]
    assert len(measured) == 4
    assert all(line.strip().startswith(str(ROOT)) for line in measured)
