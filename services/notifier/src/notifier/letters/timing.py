"""When a letter is due: pure functions over aware datetimes (zoneinfo, DST-safe).

Wall-clock targets ("11:00 local", "the end of quiet hours") are built as local times in the
recipient's zone and converted to UTC, so they stay at the same local time across DST changes.
A local time that does not exist (spring-forward gap) is moved forward by the gap; an ambiguous
one (fall-back) takes its first occurrence. Delays (``After``) are absolute durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Immediately:
    """As soon as the event is processed."""


@dataclass(frozen=True)
class After:
    """A fixed duration after the triggering event occurred."""

    delay: timedelta


@dataclass(frozen=True)
class AtLocalTime:
    """``days`` calendar days after the trigger (recipient's zone), at wall-clock ``at``."""

    days: int
    at: time


Timing = Immediately | After | AtLocalTime


@dataclass(frozen=True)
class QuietHours:
    """Local wall-clock window ``[start, end)`` without sends; may wrap midnight (21:00-09:00)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def local_wall_clock(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day``'s local date in ``tz`` (gap-safe)."""
    # fold=0 (PEP 495): in a gap the pre-transition offset applies, i.e. the time moves forward
    return datetime.combine(day.date(), at).replace(tzinfo=tz, fold=0).astimezone(UTC)


def outside_quiet_hours(at: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """``at`` itself, or the first allowed minute (the end of the quiet window) after it."""
    if quiet is None:
        return at
    local = at.astimezone(tz)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return at
    day = local
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day = local + timedelta(days=1)
    return local_wall_clock(day, quiet.end, tz)


def planned_at(trigger_at: datetime, timing: Timing, tz: ZoneInfo) -> datetime:
    """Send time before quiet hours: the trigger time moved by ``timing``."""
    if isinstance(timing, Immediately):
        return trigger_at
    if isinstance(timing, After):
        return trigger_at + timing.delay
    local = trigger_at.astimezone(tz)
    return local_wall_clock(local + timedelta(days=timing.days), timing.at, tz)


def send_at(
    trigger_at: datetime,
    timing: Timing,
    *,
    tz: ZoneInfo,
    quiet: QuietHours | None,
    not_before: datetime | None = None,
) -> datetime:
    """When the letter is due (UTC): timing, never before ``not_before``, then quiet hours."""
    if trigger_at.tzinfo is None:
        raise ValueError("trigger_at must be timezone-aware")
    due = planned_at(trigger_at, timing, tz)
    if not_before is not None and (due < not_before or isinstance(timing, Immediately)):
        due = not_before  # never in the past; "immediately" = when processed (producer skew)
    return outside_quiet_hours(due, tz, quiet).astimezone(UTC)


def expires_at(due: datetime, expires_after: timedelta | None) -> datetime | None:
    return None if expires_after is None else due + expires_after


def is_expired(expiry: datetime | None, now: datetime) -> bool:
    return expiry is not None and now >= expiry
