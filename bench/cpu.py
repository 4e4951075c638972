"""Where the box's two cores go during a workload: CPU seconds per role between two snapshots,
for the processes a workload started (worker, gateway, upstream stub) and the servers they share
(the PostgreSQL backends of the bench database, the Redis server when it runs on this machine).

On a shared box a rate swings with the neighbours' load; the CPU each process spent per unit of
work moves much less, and the roles together say what one letter or event costs the box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import psutil

from bench.env import BenchEnv
from bench.procs import Proc, cpu_seconds

_BACKENDS_SQL = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"

Snapshot = dict[str, dict[int, float]]


def shared_servers(env: BenchEnv) -> dict[str, list[int]]:
    """``postgres``: the server processes serving the bench database now; ``redis``: the Redis
    server, when it runs on this machine."""
    pids = {"postgres": [int(r["pid"]) for r in env.sql(_BACKENDS_SQL)]}
    client = env.redis()
    try:
        redis_pid = int(cast(dict[str, Any], client.info("server"))["process_id"])
    finally:
        client.close()
    if psutil.pid_exists(redis_pid):  # else Redis is not on this machine
        pids["redis"] = [redis_pid]
    return pids


def cpu_by_pid(
    procs: Mapping[str, Proc | Sequence[Proc]], servers: Mapping[str, list[int]]
) -> Snapshot:
    """CPU seconds so far of every process, by role (a role may have several processes)."""
    out: Snapshot = {}
    for role, group in procs.items():
        members = [group] if isinstance(group, Proc) else list(group)
        out[role] = {p.pid: cpu_seconds(p.pid) for p in members}
    for role, pids in servers.items():
        out[role] = {pid: cpu_seconds(pid) for pid in pids}
    return out


def snapshot(env: BenchEnv, procs: Mapping[str, Proc | Sequence[Proc]]) -> Snapshot:
    return cpu_by_pid(procs, shared_servers(env))


def cpu_spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per role between two snapshots; a process that appeared in between (a
    backend the pools opened during the run) counts from zero."""
    return {
        role: sum(t - before.get(role, {}).get(pid, 0.0) for pid, t in pids.items())
        for role, pids in after.items()
    }


def per_unit_us(spent: Mapping[str, float], units: int) -> dict[str, int]:
    """Microseconds of CPU per unit of work (letter, event) by role, and their ``total``."""
    out = {role: round(1e6 * sec / max(units, 1)) for role, sec in spent.items()}
    out["total"] = sum(out.values())
    return out
