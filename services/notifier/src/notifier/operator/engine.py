"""What the operator API reads from the letter engine's catalog, in one place.

The timeline derives the decision (planned time, quiet-hour shift) from the letter row and the
letter's declared timing, because the engine stores no separate decision record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from notifier.letters import timing as timing_mod
from notifier.letters.catalog import AnySpec, LetterParams
from notifier.letters.definitions import LETTERS
from notifier.models import Letter

DEFAULT_QUIET_HOURS = timing_mod.QuietHours(start=time(21, 0), end=time(9, 0))


def spec_of(name: str) -> AnySpec | None:
    return LETTERS.get(name) if name in LETTERS else None


def effective_params(spec: AnySpec, overrides: Mapping[str, Any] | None) -> LetterParams:
    """Code defaults + stored overrides; a stored override that no longer validates is ignored
    (the defaults are shown) rather than breaking the history view."""
    try:
        return spec.parse_params(overrides or {})
    except ValidationError:
        return spec.default_params()


def describe_timing(name: str, overrides: Mapping[str, Any] | None = None) -> str | None:
    spec = spec_of(name)
    if spec is None:
        return None
    timing = spec.timing(effective_params(spec, overrides))
    if isinstance(timing, timing_mod.Immediately):
        return "immediately"
    if isinstance(timing, timing_mod.After):
        return f"{timing.delay} after the event"
    return f"{timing.days} day(s) after the event at {timing.at.isoformat('minutes')} local"


def recipient_zone(context: Mapping[str, Any]) -> ZoneInfo:
    """The recipient's zone from the context snapshot (``client.timezone``), UTC if unknown."""
    client = context.get("client")
    name = client.get("timezone") if isinstance(client, Mapping) else context.get("timezone")
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def planned_times(
    letter: Letter, overrides: Mapping[str, Any] | None = None
) -> tuple[datetime, datetime] | None:
    """``(due before quiet hours, due after quiet hours)`` as the engine would compute them at
    creation, or None when the letter is not in the catalog."""
    spec = spec_of(letter.letter)
    if spec is None:
        return None
    params = effective_params(spec, overrides)
    timing = spec.timing(params)
    tz = recipient_zone(letter.context or {})
    floor = letter.created_at
    before = timing_mod.send_at(letter.triggered_at, timing, tz=tz, quiet=None, not_before=floor)
    after = timing_mod.send_at(
        letter.triggered_at,
        timing,
        tz=tz,
        quiet=params.quiet_hours(DEFAULT_QUIET_HOURS),
        not_before=floor,
    )
    return before, after
