"""The benchmark harness's pure parts: aggregation and the latest.json schema (no timings)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import drain, stats
from bench.run import parse_args, table


class TestAggregation:
    def test_spread_is_median_min_max(self) -> None:
        assert stats.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}

    def test_percentile_nearest_rank(self) -> None:
        values = [float(v) for v in range(1, 101)]
        assert stats.percentile(values, 50) == 50.0
        assert stats.percentile(values, 99) == 99.0
        assert stats.percentile([7.0], 99) == 7.0

    def test_entry_keeps_runs_and_computes_ratio(self) -> None:
        runs = [{"value": v, "baseline": b} for v, b in ((10, 20), (30, 40), (20, 30))]
        entry = stats.entry(unit="events/s", runs=runs, params={"n": 1})
        assert entry["value"] == 20.0
        assert (entry["min"], entry["max"]) == (10.0, 30.0)
        assert entry["baseline"] == 30.0
        assert entry["ratio"] == pytest.approx(20 / 30, abs=1e-3)
        assert entry["runs"] == runs
        stats.validate_entry("x", entry)

    def test_lower_is_better_inverts_the_ratio(self) -> None:
        runs = [{"value": 50, "baseline": 100}] * 3
        entry = stats.entry(unit="ms", runs=runs, params={}, higher_is_better=False)
        assert entry["ratio"] == 2.0


class TestSchema:
    def test_skipped_needs_a_reason(self) -> None:
        stats.validate_entry("drain", stats.skipped("no letter engine yet"))
        with pytest.raises(ValueError, match="reason"):
            stats.validate_entry("drain", {"skipped": ""})

    def test_fewer_than_three_runs_is_refused(self) -> None:
        entry = stats.entry(unit="x/s", runs=[{"value": 1, "baseline": 1}], params={})
        with pytest.raises(ValueError, match="3 runs"):
            stats.validate_entry("intake", entry)

    def test_table_lists_every_key(self) -> None:
        runs = [{"value": 1.0, "baseline": 2.0}] * 3
        text = table(
            {
                "intake": stats.entry(unit="events/s", runs=runs, params={}),
                "drain": stats.skipped("later"),
            }
        )
        assert "intake" in text
        assert "skipped" in text


class TestMemoryFlatness:
    def test_growth_is_judged_after_the_first_drain_round(self) -> None:
        """Warm-up (the first round) is reported apart from growth over the later rounds."""
        from types import SimpleNamespace

        from bench import memory

        sampler = SimpleNamespace(
            peaks={"gateway": 110.0},
            hwm={"gateway": 111.0},
            proc_peaks={"03-gateway (drain)": 111.0},
        )
        env = SimpleNamespace(sup=SimpleNamespace(sampler=sampler))
        marks = {
            "gateway_before_drain": 87.0,
            "gateway_after_first_drain": 97.0,
            "gateway_after_drain": 98.0,
        }
        saved = dict(memory.MARKS)
        memory.MARKS.clear()
        memory.MARKS.update(marks)
        try:
            out = memory.run(env, None)  # type: ignore[arg-type]
        finally:
            memory.MARKS.clear()
            memory.MARKS.update(saved)
        assert out["value"] == 111.0
        assert out["gateway_after_over_before_drain"] == round(98 / 87, 3)
        assert out["gateway_growth_after_first_drain"] == round(98 / 97, 3)
        assert out["per_process_mb"] == {"03-gateway (drain)": 111.0}

    def test_each_process_peak_is_named_by_the_workload_that_started_it(
        self, tmp_path: Path
    ) -> None:
        """A role's peak can be traced to the process (and workload) that reached it."""
        import sys

        from bench.procs import Supervisor

        sup = Supervisor(tmp_path)
        sup.workload = "drain"
        hold = "import time; x = bytearray(40 << 20); x[::4096] = b'1' * len(x[::4096]); "
        proc = sup.start("worker", [sys.executable, "-c", hold + "time.sleep(30)"], env={})
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sup.sampler.sample_now(proc.pid)
                if sup.sampler.proc_peaks.get("01-worker (drain)", 0.0) >= 40:
                    break
                time.sleep(0.1)
        finally:
            sup.stop_all()
        assert sup.sampler.proc_peaks["01-worker (drain)"] >= 40
        assert sup.sampler.peaks["worker"] <= sup.sampler.proc_peaks["01-worker (drain)"]


def test_box_speed_is_the_time_of_a_fixed_loop() -> None:
    from bench.env import box_speed_ms

    small, big = box_speed_ms(20_000), box_speed_ms(2_000_000)
    assert 0 < small < big  # the same loop, 100 times longer: a measured time, not a constant


class TestLatencyTail:
    def test_a_stall_shows_as_one_second_with_many_events_over(self) -> None:
        from bench.latency import tail_shape

        steady = [(1000.0 + i / 200, 40.0) for i in range(2000)]  # 10 s at 200/s, 40 ms each
        stall = [(1004.0 + i / 200, 300.0) for i in range(100)]  # half a second at 300 ms
        shape = tail_shape([*steady, *stall, (1008.5, 120.0)])
        assert shape == {
            "over_target": 101,
            "seconds_over_target": 2,
            "worst_second": {"at_s": 4, "events_over": 100},
        }

    def test_no_event_over_the_target(self) -> None:
        from bench.latency import tail_shape

        assert tail_shape([(1.0, 99.0), (2.0, 100.0)]) == {
            "over_target": 0,
            "seconds_over_target": 0,
            "worst_second": None,
        }
        assert tail_shape([])["worst_second"] is None


class TestRoundSeconds:
    def test_a_finished_round_ends_when_its_last_letter_was_counted(self) -> None:
        # the last count at 4.52 s; the poll saw it at 5.0 s
        assert drain.round_seconds(5.0, 1000.0, b"1004.52", 20_000, 20_000) == pytest.approx(4.52)

    def test_a_capped_round_ends_at_the_poll(self) -> None:
        assert drain.round_seconds(25.0, 1000.0, b"1024.9", 90_000, 100_000) == 25.0

    def test_without_a_count_time_the_poll_decides(self) -> None:
        assert drain.round_seconds(5.0, 1000.0, None, 20_000, 20_000) == 5.0


class TestCommandLine:
    def test_latency_rate_sets_the_latency_workloads_rate(self) -> None:
        _, selected, cfg = parse_args(["--only", "latency", "--latency-rate", "50"])
        assert selected == ["latency"]
        assert cfg.latency_rate == 50
        _, _, default = parse_args(["--only", "latency"])
        assert default.latency_rate == 200

    def test_a_rate_below_one_is_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            parse_args(["--latency-rate", "0"])
        assert "--latency-rate must be >= 1" in capsys.readouterr().err


class TestScaleOrder:
    def test_backlogs_alternate_in_pairs(self) -> None:
        """Each pair is measured side by side, and which backlog goes first alternates, so a
        drift of the box's speed during the workload does not favour one side."""
        from bench import scale

        assert scale.order(3) == ["small", "big", "big", "small", "small", "big"]
        assert scale.order(4).count("small") == scale.order(4).count("big") == 4


class TestRssSampler:
    def test_counts_children_and_lists_them_once_per_period(self) -> None:
        """A watched process's RSS includes its children's; the children are listed again only
        after ``children_every`` (each listing reads every process's ``/proc`` entry)."""
        import subprocess
        import sys

        import psutil

        from bench.procs import RssSampler

        # the child prints once started (it shares the parent's stdout), then both sleep
        child_code = "import time; print('ready', flush=True); time.sleep(30)"
        code = (
            "import subprocess, sys, time; "
            f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}]); "
            "print(c.pid, flush=True); time.sleep(30)"
        )
        parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert parent.stdout is not None
            child_pid = int(parent.stdout.readline())
            assert parent.stdout.readline().strip() == "ready"
            sampler = RssSampler(children_every=3600)
            own = psutil.Process(parent.pid).memory_info().rss / 1_048_576
            child = psutil.Process(child_pid).memory_info().rss / 1_048_576
            total = sampler.rss_mb(parent.pid)
            assert total is not None
            assert own + 0.5 * child < total < 1.5 * (own + child)
            listed = sampler._children[parent.pid]
            sampler.rss_mb(parent.pid)
            assert sampler._children[parent.pid] is listed  # not listed again
            sampler.children_every = 0.0
            sampler.rss_mb(parent.pid)
            assert sampler._children[parent.pid] is not listed
        finally:
            for proc in psutil.Process(parent.pid).children(recursive=True):
                proc.kill()
            parent.kill()
            parent.wait()
