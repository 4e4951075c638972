"""A letter's timeline: event -> decision -> attempts -> provider status -> outcome -> delivery.

The engine stores no separate decision record; the decision is derived from the row itself
(``triggered_at``, ``send_at``, ``expires_at``, ``dedup_key``, origin) and, when the catalog
knows the letter, from its timing (the due time before quiet hours, to show a shift).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from notifier.models import Attempt, Event, Letter, LetterOrigin, LetterStatus
from notifier.operator import engine
from notifier.operator.schemas import TimelineEntry


def build(
    letter: Letter,
    *,
    event: Event | None,
    attempts: list[Attempt],
    resends: list[Letter],
    overrides: Mapping[str, Any] | None = None,
) -> list[TimelineEntry]:
    entries = [*_origin(letter, event), _decision(letter, overrides)]
    entries += [_attempt(a) for a in attempts]
    if letter.provider_message_id:
        entries.append(
            TimelineEntry(
                at=letter.sent_at,
                kind="provider",
                summary=f"provider message id {letter.provider_message_id}",
                detail={"provider_message_id": letter.provider_message_id},
            )
        )
    outcome = _outcome(letter)
    if outcome is not None:
        entries.append(outcome)
    if letter.delivery_status:  # pulled from the gateway's status feed (suppressions/tasks.py)
        entries.append(
            TimelineEntry(
                at=letter.delivery_updated_at,
                kind="provider",
                summary=f"provider reported {letter.delivery_status}",
                detail={"delivery_status": letter.delivery_status},
            )
        )
    entries += [
        TimelineEntry(
            at=r.created_at,
            kind="resent",
            summary=f"re-sent as letter {r.id} by {r.created_by or 'unknown'}",
            detail={"letter_id": r.id, "status": r.status.value},
        )
        for r in resends
    ]
    return entries


def _origin(letter: Letter, event: Event | None) -> list[TimelineEntry]:
    out: list[TimelineEntry] = []
    if letter.event_id is not None:
        detail: dict[str, Any] = {"event_id": str(letter.event_id)}
        if event is not None:
            detail |= {
                "type": event.type,
                "status": event.status.value,
                "received_at": event.received_at.isoformat() if event.received_at else None,
            }
        out.append(
            TimelineEntry(
                at=event.occurred_at if event else letter.triggered_at,
                kind="event",
                summary=f"event {event.type if event else letter.event_id} occurred",
                detail=detail,
            )
        )
    if letter.origin != LetterOrigin.event:
        what = "manual send" if letter.origin == LetterOrigin.manual else "resend"
        suffix = f" of letter {letter.resend_of}" if letter.resend_of else ""
        out.append(
            TimelineEntry(
                at=letter.created_at,
                kind="created",
                summary=f"{what}{suffix} by {letter.created_by or 'unknown'}",
                detail={"origin": letter.origin.value, "created_by": letter.created_by},
            )
        )
    return out


def _decision(letter: Letter, overrides: Mapping[str, Any] | None) -> TimelineEntry:
    """Why and for when: derived from the row and the letter's declared timing."""
    times = engine.planned_times(letter, overrides)
    planned, due = times if times else (None, letter.send_at)
    shifted = planned is not None and planned != due
    why = "for " + due.isoformat()
    if shifted and planned is not None:
        why += f" (quiet hours moved it from {planned.isoformat()})"
    if letter.origin != LetterOrigin.event:
        why = f"by an operator ({letter.origin.value}) for {letter.send_at.isoformat()}"
        planned, shifted = None, False
    detail: dict[str, Any] = {
        "triggered_at": letter.triggered_at.isoformat(),
        "planned_at": _iso(planned),
        "scheduled_for": due.isoformat(),
        "send_at": letter.send_at.isoformat(),
        "quiet_hours_shift": shifted,
        "expires_at": _iso(letter.expires_at),
        "dedup_key": letter.dedup_key,
        "recipient": letter.recipient,
        "timing": engine.describe_timing(letter.letter, overrides),
    }
    return TimelineEntry(
        at=letter.created_at, kind="decision", summary=f"scheduled {why}", detail=detail
    )


def _attempt(a: Attempt) -> TimelineEntry:
    code = f" HTTP {a.status_code}" if a.status_code else ""
    error = f": {a.error}" if a.error else ""
    return TimelineEntry(
        at=a.created_at,
        kind="attempt",
        summary=f"try {a.try_number} {a.outcome.value}{code}{error}",
        detail={
            "outcome": a.outcome.value,
            "status_code": a.status_code,
            "code": a.code,
            "provider": a.provider,
            "provider_message_id": a.provider_message_id,
            "duration_ms": a.duration_ms,
        },
    )


def _outcome(letter: Letter) -> TimelineEntry | None:
    status = letter.status
    if status == LetterStatus.sent:
        return TimelineEntry(at=letter.sent_at, kind="sent", summary="sent")
    if status == LetterStatus.cancelled:
        by = letter.cancelled_by_event_id
        return TimelineEntry(
            at=letter.updated_at,
            kind="cancelled",
            summary=f"cancelled: {letter.cancel_reason or 'no reason recorded'}",
            detail={"reason": letter.cancel_reason, "event_id": str(by) if by else None},
        )
    if status == LetterStatus.skipped:
        return TimelineEntry(
            at=letter.updated_at,
            kind="skipped",
            summary=f"skipped: {letter.skip_reason or 'no reason recorded'}",
            detail={"reason": letter.skip_reason},
        )
    if status == LetterStatus.expired:
        return TimelineEntry(
            at=letter.expires_at or letter.updated_at,
            kind="expired",
            summary="expired before it could be sent",
        )
    if status == LetterStatus.failed:
        return TimelineEntry(
            at=letter.updated_at,
            kind="failed",
            summary=f"failed: {letter.last_error or 'no error recorded'}",
            detail={"error": letter.last_error, "attempts": letter.attempts},
        )
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
