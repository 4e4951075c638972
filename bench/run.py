"""``make bench`` entry point: ``python -m bench.run [--quick] [--only intake,processing]``."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import stats
from bench.config import Config
from bench.env import ROOT, BenchEnv, bench_env, box_speed_ms, dump, machine_info

WORKLOADS = ("intake", "processing", "drain", "drain_smtp", "latency", "scale", "memory")
RESULTS = ROOT / "bench" / "results"


def run_workload(name: str, env: BenchEnv, cfg: Config) -> dict[str, Any]:
    module = importlib.import_module(f"bench.{name}")
    t0 = time.monotonic()
    try:
        result: dict[str, Any] = module.run(env, cfg)
    except Exception as exc:  # one broken workload must not hide the others
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "skipped": "failed, see error"}
    if "skipped" not in result:
        result.setdefault("params", {})["wall_seconds"] = round(time.monotonic() - t0, 1)
    return result


def fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    return str(x)


def table(results: dict[str, Any]) -> str:
    rows = [("key", "value", "unit", "baseline", "ratio", "min..max")]
    for name, data in results.items():
        if "skipped" in data:
            rows.append((name, "skipped", "", "", "", data["skipped"][:70]))
            continue
        spread = f"{fmt(data.get('min'))}..{fmt(data.get('max'))}"
        rows.append(
            (
                name,
                fmt(data["value"]),
                data["unit"],
                fmt(data["baseline"]),
                fmt(data["ratio"]),
                spread,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], Config]:
    """The command line: its arguments, the selected workloads and their sizes."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (< 3 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {WORKLOADS}")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (>= 3)")
    parser.add_argument("--log-level", default="INFO", help="log level of the started services")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the bench database")
    parser.add_argument(
        "--cap", type=float, default=None, help="override the per-run time cap (s) of the drains"
    )
    parser.add_argument(
        "--latency-rate",
        type=int,
        default=None,
        help="events/s of the latency workload (default 200, the target's rate): for a "
        "latency-against-load curve; the rate is in the entry's params",
    )
    parser.add_argument("--revision", default="head", help="migrate the bench db to this")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    selected = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(selected) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {WORKLOADS}")
    if args.runs < 3:
        parser.error("--runs must be >= 3 (every figure is a median of >= 3 runs)")
    cfg = Config.make(quick=args.quick)
    overrides: dict[str, Any] = {"runs": args.runs}
    if args.cap:
        overrides.update(processing_cap=args.cap, drain_cap=args.cap)
    if args.latency_rate is not None:
        if args.latency_rate < 1:
            parser.error("--latency-rate must be >= 1 event/s")
        overrides["latency_rate"] = args.latency_rate
    cfg = Config(**{**cfg.__dict__, **overrides})
    return args, selected, cfg


def main(argv: list[str] | None = None) -> int:
    args, selected, cfg = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(f"bench: stopped by signal {signum}")  # unwinds: every process stopped

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": cfg.quick,
        "machine": {},
        "results": {},
    }
    with bench_env(log_level=args.log_level, keep_db=args.keep_db, revision=args.revision) as env:
        out["machine"] = machine_info(env)
        for name in [w for w in WORKLOADS if w in selected]:
            print(f"== {name}", file=sys.stderr, flush=True)
            env.sup.workload = name
            out["machine"].setdefault("box_speed_ms", {})[name] = box_speed_ms()
            out["results"][name] = run_workload(name, env, cfg)
            print(table({name: out["results"][name]}), file=sys.stderr, flush=True)
            partial = {k: v for k, v in out.items() if k != "results"} | out["results"]
            dump(args.out, partial | {"partial": True})  # kept if the run is cut short
        out["memory_samples"] = env.sup.sampler.peaks
    for name, data in out["results"].items():
        stats.validate_entry(name, data)
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    # the workloads' results at the top level, as the issue's table names them
    final = {k: v for k, v in out.items() if k != "results"} | out["results"]
    dump(args.out, final)
    print(f"\nnotifier bench — {final['date']} — {'quick' if cfg.quick else 'full'}")
    m = out["machine"]
    print(
        f"machine: {m['cpu_count']} cpu, python {m['python']}, postgres {m['postgres']} "
        f"({m['postgres_source']}), redis {m['redis']} ({m['redis_source']})\n"
    )
    print(table(out["results"]))
    mem = out["results"].get("memory", {})
    if mem.get("peaks_mb"):
        peaks = ", ".join(f"{role} {mb:.1f}" for role, mb in sorted(mem["peaks_mb"].items()))
        cold = mem.get("gateway_after_over_before_drain")
        flat = mem.get("gateway_growth_after_first_drain")
        tail = f"; gateway after/before the drains {cold}" if cold else ""
        tail += f", after the last / after the first drain round {flat}" if flat else ""
        print(f"\npeak RSS (MB): {peaks}{tail}")
    print(f"\nwrote {args.out} in {out['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
