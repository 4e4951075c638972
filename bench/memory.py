"""``memory``: peak RSS (process + children) of api, worker and gateway over every workload that ran
before it (bench/procs.py samples every started process every 0.2 s), and the gateway's RSS
after the drain runs vs before them. No baseline: the target is < 120 MB each, flat."""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.config import Config
from bench.env import BenchEnv

#: marks recorded by other workloads, e.g. {"gateway_before_drain": 80.1, ...}
MARKS: dict[str, float] = {}
ROLES = ("api", "worker", "gateway")


def run(env: BenchEnv, cfg: Config) -> dict[str, Any]:
    sampler = env.sup.sampler
    sampled = {role: round(mb, 1) for role, mb in sampler.peaks.items() if role in ROLES}
    if not sampled:
        return stats.skipped("no api/worker/gateway process ran before it (select more workloads)")
    # the true peak: the larger of the sampled RSS (process + children) and the kernel's VmHWM
    # of the process itself (a spike between two samples)
    peaks = {role: round(max(mb, sampler.hwm.get(role, 0.0)), 1) for role, mb in sampled.items()}
    largest = max(peaks.values())
    out = {
        "value": largest,
        "unit": "MB",
        "baseline": None,
        "ratio": None,
        "runs": [{"role": role, "peak_mb": mb} for role, mb in sorted(peaks.items())],
        "params": {
            "sampled": "RSS of each started process + its children every 0.2 s, and VmHWM",
            "roles": sorted(peaks),
            "all_roles_peak_mb": {k: round(v, 1) for k, v in env.sup.sampler.peaks.items()},
            "target": "< 120 MB each, flat",
            "note": "one peak per role over the whole run: the runs of the other workloads are"
            " the repetitions",
        },
        "peaks_mb": peaks,
        "sampled_peaks_mb": sampled,
        "vmhwm_mb": {k: round(v, 1) for k, v in sampler.hwm.items() if k in ROLES},
        "marks_mb": {k: round(v, 1) for k, v in MARKS.items()},
        # which process of a role peaked: "<seq>-<role> (<workload that started it>)"
        "per_process_mb": {k: round(v, 1) for k, v in sorted(sampler.proc_peaks.items())},
    }
    before, after = MARKS.get("gateway_before_drain"), MARKS.get("gateway_after_drain")
    if before and after:
        out["gateway_after_over_before_drain"] = round(after / before, 3)  # warm-up included
    first = MARKS.get("gateway_after_first_drain")
    if first and after:
        # "flat": RSS after the last drain round over RSS after the first one
        out["gateway_growth_after_first_drain"] = round(after / first, 3)
    return out
