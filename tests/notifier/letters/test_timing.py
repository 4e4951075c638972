from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from notifier.letters.timing import (
    After,
    AtLocalTime,
    Immediately,
    QuietHours,
    expires_at,
    is_expired,
    local_wall_clock,
    send_at,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
QUIET = QuietHours(time(21, 0), time(9, 0))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestQuietHours:
    @pytest.mark.parametrize(
        ("local", "inside"),
        [(time(20, 59), False), (time(21, 0), True), (time(3, 0), True), (time(9, 0), False)],
    )
    def test_the_window_wraps_midnight(self, local: time, inside: bool) -> None:
        assert QUIET.contains(local) is inside

    def test_an_evening_send_moves_to_nine_next_morning_local(self) -> None:
        # 19:30 UTC = 22:30 Moscow -> 09:00 Moscow next day = 06:00 UTC
        due = send_at(utc(2026, 3, 2, 19, 30), Immediately(), tz=MOSCOW, quiet=QUIET)
        assert due == utc(2026, 3, 3, 6, 0)

    def test_an_early_morning_send_moves_to_nine_the_same_day(self) -> None:
        due = send_at(utc(2026, 3, 2, 2, 0), Immediately(), tz=MOSCOW, quiet=QUIET)  # 05:00 MSK
        assert due == utc(2026, 3, 2, 6, 0)

    def test_a_daytime_send_is_not_moved(self) -> None:
        assert send_at(utc(2026, 3, 2, 10, 0), Immediately(), tz=MOSCOW, quiet=QUIET) == utc(
            2026, 3, 2, 10, 0
        )

    def test_no_quiet_hours_means_no_move(self) -> None:
        at = utc(2026, 3, 2, 22, 0)
        assert send_at(at, Immediately(), tz=MOSCOW, quiet=None) == at

    def test_quiet_hours_end_is_local_wall_clock_across_dst(self) -> None:
        # New York springs forward on 2026-03-08: 09:00 EDT is 13:00 UTC (EST would be 14:00)
        due = send_at(utc(2026, 3, 8, 3, 0), Immediately(), tz=NEW_YORK, quiet=QUIET)
        assert due == utc(2026, 3, 8, 13, 0)
        assert due.astimezone(NEW_YORK).time() == time(9, 0)


class TestTimings:
    def test_after_adds_an_absolute_delay(self) -> None:
        trigger = utc(2026, 5, 1, 12, 0)
        due = send_at(trigger, After(timedelta(days=1)), tz=MOSCOW, quiet=QUIET)
        assert due == utc(2026, 5, 2, 12, 0)

    def test_after_lands_in_quiet_hours_then_moves_to_morning(self) -> None:
        trigger = utc(2026, 5, 1, 19, 0)  # 22:00 Moscow
        due = send_at(trigger, After(timedelta(days=3)), tz=MOSCOW, quiet=QUIET)
        assert due == utc(2026, 5, 5, 6, 0)

    def test_at_local_time_is_eleven_local_days_later(self) -> None:
        trigger = utc(2026, 5, 1, 20, 0)  # 23:00 Moscow on May 1st
        due = send_at(trigger, AtLocalTime(days=3, at=time(11, 0)), tz=MOSCOW, quiet=QUIET)
        assert due == utc(2026, 5, 4, 8, 0)  # 11:00 Moscow on May 4th

    def test_at_local_time_uses_the_recipients_calendar_day(self) -> None:
        trigger = utc(2026, 5, 1, 21, 30)  # already May 2nd in Moscow, still May 1st in Berlin
        moscow = send_at(trigger, AtLocalTime(days=3, at=time(11, 0)), tz=MOSCOW, quiet=QUIET)
        berlin = send_at(trigger, AtLocalTime(days=3, at=time(11, 0)), tz=BERLIN, quiet=QUIET)
        assert moscow == utc(2026, 5, 5, 8, 0)
        assert berlin == utc(2026, 5, 4, 9, 0)

    def test_at_local_time_keeps_eleven_across_the_autumn_dst_change(self) -> None:
        # Berlin falls back on 2026-10-25: 11:00 CEST = 09:00 UTC before, 11:00 CET = 10:00 after
        trigger = utc(2026, 10, 23, 12, 0)
        due = send_at(trigger, AtLocalTime(days=3, at=time(11, 0)), tz=BERLIN, quiet=QUIET)
        assert due == utc(2026, 10, 26, 10, 0)
        assert due.astimezone(BERLIN).time() == time(11, 0)

    def test_a_wall_clock_time_in_the_spring_gap_moves_forward(self) -> None:
        # 02:30 does not exist in Berlin on 2026-03-29
        at = local_wall_clock(utc(2026, 3, 29, 12, 0), time(2, 30), BERLIN)
        assert at.astimezone(BERLIN).time() == time(3, 30)

    def test_a_late_event_is_never_scheduled_in_the_past(self) -> None:
        trigger = utc(2026, 5, 1, 10, 0)
        now = utc(2026, 5, 9, 10, 0)
        due = send_at(trigger, After(timedelta(days=1)), tz=MOSCOW, quiet=QUIET, not_before=now)
        assert due == now

    def test_a_naive_trigger_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            send_at(datetime(2026, 5, 1), Immediately(), tz=MOSCOW, quiet=QUIET)


class TestExpiry:
    def test_expiry_is_relative_to_the_due_time(self) -> None:
        due = utc(2026, 5, 1, 10, 0)
        expiry = expires_at(due, timedelta(days=1))
        assert expiry == utc(2026, 5, 2, 10, 0)
        assert not is_expired(expiry, utc(2026, 5, 2, 9, 59))
        assert is_expired(expiry, utc(2026, 5, 2, 10, 0))

    def test_no_expiry_never_expires(self) -> None:
        assert expires_at(utc(2026, 5, 1), None) is None
        assert not is_expired(None, utc(2099, 1, 1))


def test_immediately_means_when_processed_even_if_the_producer_clock_is_ahead() -> None:
    now = utc(2026, 5, 1, 10, 0)
    ahead = now + timedelta(seconds=30)
    assert send_at(ahead, Immediately(), tz=MOSCOW, quiet=QUIET, not_before=now) == now
