"""``bench.http_client`` runs end to end (a few GETs against the real stub): the measure decision
0106 quotes keeps working. No timings are checked."""

from __future__ import annotations

from tests.bench.tool import run_tool


def test_the_get_measure_runs_every_way_against_the_stub() -> None:
    lines = run_tool(
        "bench.http_client", "--requests", "40", "--concurrency", "4", "--runs", "1", timeout=90
    )
    assert lines[0] == "40 GETs, 4 in flight, median of 1:"
    assert [line.split()[0] for line in lines[1:]] == ["direct", "httpx", "httpcore"]
    assert all("µs CPU per GET" in line for line in lines[1:])
