"""Sizes of every workload, full and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    quick: bool
    runs: int = 3
    intake_seconds: float = 30.0
    intake_clients: int = 16
    intake_batch: int = 100
    processing_events: int = 50_000
    processing_cap: float = 25.0  # seconds per run at most (rate over what finished)
    drain_letters: int = 100_000
    drain_cap: float = 25.0  # seconds per drain at most (rate over what became final)
    drain_smtp_letters: int = 20_000
    latency_rate: int = 200
    latency_seconds: float = 60.0
    latency_grace: float = 5.0  # seconds to wait for the last letters after publishing
    # published at the same rate before the first run and not measured: the worker's and the
    # gateway's first seconds (connections, prepared statements, templates) are a start-up cost
    latency_warmup: float = 3.0
    scale_due: int = 20_000
    scale_small: int = 10_000
    scale_big: int = 1_000_000

    @classmethod
    def make(cls, *, quick: bool) -> Config:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            intake_seconds=3.0,
            processing_events=2_000,
            processing_cap=3.0,
            drain_letters=5_000,
            drain_cap=4.0,
            drain_smtp_letters=1_000,
            latency_seconds=5.0,
            latency_grace=2.0,
            latency_warmup=1.0,
            scale_due=1_000,
            scale_small=5_000,
            scale_big=20_000,
        )
