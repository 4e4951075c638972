"""``scale``: drain rate (2 worker processes, real cron function, real gateway) of N due letters
with 10,000 and with 1,000,000 not-yet-due rows in notifier.letters (COPY). Value: the rate with
the big backlog; ratio = big / small (target >= 0.9: cost does not grow with the backlog)."""

from __future__ import annotations

from typing import Any

from bench import drain, letters, stats
from bench.config import Config
from bench.env import BenchEnv, as_int

#: the due rows are COPY'd after the backlog, so their ids are above it: delete through the pk
CLEAR_DUE = "DELETE FROM notifier.letters WHERE id > $1"
CLEAR_ATTEMPTS = "TRUNCATE notifier.attempts"


def rates(
    env: BenchEnv,
    cfg: Config,
    tpls: list[dict[str, Any]],
    backlog: int,
    pool: drain.DrainPool,
) -> list[float]:
    letters.reset(env)
    letters.copy_due(env, tpls, backlog, due=False, tag="backlog")
    last_backlog_id = as_int(env.sql("SELECT max(id) FROM notifier.letters")[0][0])
    out = []
    for _ in range(cfg.runs):
        env.sql(CLEAR_ATTEMPTS)
        env.sql(CLEAR_DUE, last_backlog_id)
        letters.copy_due(env, tpls, cfg.scale_due)
        env.sql("VACUUM ANALYZE notifier.letters")
        r = pool.round(expected=cfg.scale_due, cap=cfg.drain_cap)
        out.append(r["rate"])
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
        small = rates(env, cfg, tpls, cfg.scale_small, pool)
        big = rates(env, cfg, tpls, cfg.scale_big, pool)
    finally:
        if pool is not None:
            pool.close()
        drain.stop_services(env, services)
        letters.reset(env)
    runs = [{"value": b, "small_backlog": s} for s, b in zip(small, big, strict=True)]
    result = stats.entry(
        unit="letters/s",
        runs=runs,
        params={
            "due": cfg.scale_due,
            "backlog_small": cfg.scale_small,
            "backlog_big": cfg.scale_big,
            "workers": 2,
            "cap_seconds": cfg.drain_cap,
            "target": "ratio >= 0.9",
        },
        baseline_key="small_backlog",
    )
    result["ratio_meaning"] = "big-backlog rate / small-backlog rate (baseline)"
    return result
