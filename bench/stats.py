"""Aggregation and the result schema: every figure is the median of >= 3 runs, min/max kept."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


def entry(
    *,
    unit: str,
    runs: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    value_key: str = "value",
    baseline_key: str | None = "baseline",
    higher_is_better: bool = True,
    ratio: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One workload's entry in latest.json.

    ``value``/``baseline`` are the medians of the runs' ``value_key``/``baseline_key``; ``ratio``
    is value / baseline (or baseline / value when lower is better) unless given.
    """
    values = [float(r[value_key]) for r in runs if r.get(value_key) is not None]
    out: dict[str, Any] = {"value": None, "unit": unit, "baseline": None, "ratio": ratio}
    if values:
        s = spread(values)
        out.update(value=round(s["median"], 3), min=round(s["min"], 3), max=round(s["max"], 3))
    if baseline_key is not None:
        bases = [float(r[baseline_key]) for r in runs if r.get(baseline_key) is not None]
        if bases:
            b = spread(bases)
            out.update(
                baseline=round(b["median"], 3),
                baseline_min=round(b["min"], 3),
                baseline_max=round(b["max"], 3),
            )
    if out["ratio"] is None and out["value"] and out["baseline"]:
        r = out["value"] / out["baseline"] if higher_is_better else out["baseline"] / out["value"]
        out["ratio"] = round(r, 3)
    out["runs"] = [dict(r) for r in runs]
    out["params"] = dict(params)
    if extra:
        out.update(extra)
    return out


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def validate_entry(name: str, data: Mapping[str, Any]) -> None:
    """Raise ValueError when an entry does not follow the schema (used by run.py and the test)."""
    if "skipped" in data:
        if not isinstance(data["skipped"], str) or not data["skipped"]:
            raise ValueError(f"{name}: skipped needs a reason")
        return
    missing = {"value", "unit", "baseline", "ratio", "runs", "params"} - set(data)
    if missing:
        raise ValueError(f"{name}: missing {sorted(missing)}")
    if data.get("unit") != "MB" and len(data["runs"]) < 3:
        raise ValueError(f"{name}: fewer than 3 runs")
