"""``scale``: drain rate (2 worker processes, real cron function, real gateway) of N due letters
with 10,000 and with 1,000,000 not-yet-due rows in notifier.letters (COPY). Value: the rate with
the big backlog; ratio = big / small (target >= 0.9: cost does not grow with the backlog). The
runs of the two backlogs alternate in pairs (:func:`order`)."""

from __future__ import annotations

from typing import Any

from bench import drain, letters, stats
from bench.config import Config
from bench.env import BenchEnv, as_int

#: the due rows are COPY'd after the backlog, so their ids are above it: delete through the pk
CLEAR_DUE = "DELETE FROM notifier.letters WHERE id > $1"
CLEAR_ATTEMPTS = "TRUNCATE notifier.attempts"


def order(runs: int) -> list[str]:
    """The backlogs of the runs, in pairs that alternate which goes first (``small, big, big,
    small, small, big``): a box that slows down or speeds up during the workload (it does, by
    10-20 %, over minutes) weighs on both sides alike instead of on whichever ran last."""
    out: list[str] = []
    for i in range(runs):
        out += ["small", "big"] if i % 2 == 0 else ["big", "small"]
    return out


def rates(
    env: BenchEnv, cfg: Config, tpls: list[dict[str, Any]], pool: drain.DrainPool
) -> dict[str, list[float]]:
    """Drain rates with each backlog, in :func:`order`; a backlog is loaded afresh (TRUNCATE,
    COPY) when the next run needs the other one."""
    sizes = {"small": cfg.scale_small, "big": cfg.scale_big}
    out: dict[str, list[float]] = {"small": [], "big": []}
    loaded: str | None = None
    last_backlog_id = 0
    for backlog in order(cfg.runs):
        if backlog != loaded:
            letters.reset(env)
            letters.copy_due(env, tpls, sizes[backlog], due=False, tag="backlog")
            last_backlog_id = as_int(env.sql("SELECT max(id) FROM notifier.letters")[0][0])
            loaded = backlog
        env.sql(CLEAR_ATTEMPTS)
        env.sql(CLEAR_DUE, last_backlog_id)
        letters.copy_due(env, tpls, cfg.scale_due)
        env.sql("VACUUM ANALYZE notifier.letters")
        r = pool.round(expected=cfg.scale_due, cap=cfg.drain_cap)
        out[backlog].append(r["rate"])
    return out


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    missing = drain.prerequisite()
    if missing:
        return stats.skipped(missing)
    services = drain.start_services(env)
    pool: drain.DrainPool | None = None
    try:
        pool = drain.DrainPool(env, 2)
        tpls = drain.sendable_templates(env, pool)
        measured = rates(env, cfg, tpls, pool)
    finally:
        if pool is not None:
            pool.close()
        drain.stop_services(env, services)
        letters.reset(env)
    # run i: the i-th rate with each backlog, measured next to each other (``order``)
    runs = [
        {"value": b, "small_backlog": s}
        for s, b in zip(measured["small"], measured["big"], strict=True)
    ]
    result = stats.entry(
        unit="letters/s",
        runs=runs,
        params={
            "due": cfg.scale_due,
            "backlog_small": cfg.scale_small,
            "backlog_big": cfg.scale_big,
            "workers": 2,
            "cap_seconds": cfg.drain_cap,
            "order": order(cfg.runs),
            "target": "ratio >= 0.9",
        },
        baseline_key="small_backlog",
    )
    result["ratio_meaning"] = "big-backlog rate / small-backlog rate (baseline)"
    return result
