"""The injectable clock: production reads the system time, tests pass a clock they move."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)
