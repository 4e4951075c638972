"""Pydantic I/O of the operator API (letters history, timeline, actions, dry run, preview).

Request bodies are :class:`NoNulModel`: a U+0000 in any of their strings is a 422 ``string_nul``
naming the field, before it reaches PostgreSQL (decision 0094)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from notifier_common.text import NoNulModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from notifier.models import AttemptOutcome, LetterOrigin, LetterStatus

LETTER_NAME = Field(min_length=1, max_length=100, examples=["LowBalanceNotice"])
CLIENT_ID = Field(min_length=1, max_length=100, examples=["client-42"])


class LetterOut(BaseModel):
    """One letter row (the seed's ``queue`` table)."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(examples=[1042])
    event_id: uuid.UUID | None = Field(description="The triggering event (none for manual).")
    letter: str = Field(examples=["LowBalanceNotice"])
    client_id: str = Field(examples=["client-42"])
    contract_id: str | None = None
    channel: str = Field(examples=["email"])
    recipient: str = Field(examples=["finance@example.com"])
    locale: str = Field(examples=["ru"])
    status: LetterStatus
    origin: LetterOrigin
    created_by: str | None = Field(None, description="Token name of the operator (manual/resend).")
    triggered_at: datetime = Field(description="occurred_at of the triggering event.")
    send_at: datetime = Field(description="When it is (or was) due.")
    sent_at: datetime | None = None
    expires_at: datetime | None = None
    attempts: int = Field(description="Delivery tries so far.")
    provider_message_id: str | None = None
    last_error: str | None = None
    cancel_reason: str | None = None
    cancelled_by_event_id: uuid.UUID | None = None
    skip_reason: str | None = None
    delivery_status: str | None = Field(
        None, description="delivered | bounced | complained, as the provider reported it."
    )
    delivery_updated_at: datetime | None = None
    resend_of: int | None = Field(None, description="The letter this one re-sends.")
    created_at: datetime
    updated_at: datetime


class LetterPage(BaseModel):
    items: list[LetterOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    try_number: int = Field(examples=[1])
    outcome: AttemptOutcome
    status_code: int | None = Field(None, examples=[202])
    code: str | None = Field(None, description="Classified error code.")
    error: str | None = None
    provider: str | None = Field(None, examples=["smtp"])
    provider_message_id: str | None = None
    duration_ms: int | None = None
    created_at: datetime


TimelineKind = Literal[
    "event",
    "decision",
    "attempt",
    "provider",
    "sent",
    "cancelled",
    "skipped",
    "expired",
    "failed",
    "resent",
    "created",
]


class TimelineEntry(BaseModel):
    """One step of a letter's life, oldest first."""

    at: datetime | None = Field(description="When it happened (null when not recorded).")
    kind: TimelineKind
    summary: str = Field(examples=["scheduled for 2026-11-24T09:00:00+03:00 (quiet hours)"])
    detail: dict[str, Any] = Field(default_factory=dict)


class EventRef(BaseModel):
    id: uuid.UUID
    type: str | None
    status: str
    occurred_at: datetime | None
    received_at: datetime | None
    processed_at: datetime | None
    body: dict[str, Any] | None


class LetterDetail(LetterOut):
    """A letter with its context snapshot, triggering event, attempts and timeline."""

    context: dict[str, Any] = Field(description="The enrichment snapshot the letter renders from.")
    event: EventRef | None = None
    attempt_rows: list[AttemptOut] = Field(description="Delivery tries, oldest first.")
    resends: list[int] = Field(description="Letters that re-send this one.")
    timeline: list[TimelineEntry]


class ResendRequest(NoNulModel):
    model_config = ConfigDict(extra="forbid")

    fresh: bool = Field(
        False, description="Re-fetch the data from upstream instead of the stored snapshot."
    )


class CancelRequest(NoNulModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("cancelled by operator", min_length=1, max_length=150)


class LetterFilter(NoNulModel):
    """Which letters a bulk action applies to (all fields combine with AND)."""

    model_config = ConfigDict(extra="forbid")

    status: list[LetterStatus] = Field(
        default_factory=lambda: [LetterStatus.failed],
        description="Only `failed` (and `expired`) letters may be retried.",
    )
    client_id: str | None = Field(None, min_length=1, max_length=100)
    letter: str | None = Field(None, min_length=1, max_length=100)
    channel: str | None = Field(None, min_length=1, max_length=50)
    created_from: AwareDatetime | None = Field(None, description="created_at >= this.")
    created_to: AwareDatetime | None = Field(None, description="created_at < this.")


class RetryRequest(NoNulModel):
    filter: LetterFilter = Field(default_factory=LetterFilter)
    dry_run: bool = Field(False, description="Only count the matching letters.")
    max: int | None = Field(
        None, ge=1, le=100_000, description="Cap; required unless dry_run. More matches -> 409."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "filter": {"status": ["failed"], "created_from": "2026-11-20T00:00:00Z"},
                    "dry_run": True,
                },
                {"filter": {"status": ["failed"], "letter": "LowBalanceNotice"}, "max": 500},
            ]
        },
    )


class RetryResult(BaseModel):
    matched: int = Field(description="Letters matching the filter.")
    rescheduled: int = Field(description="Letters moved back to `scheduled` (0 on a dry run).")
    dry_run: bool
    letter_ids: list[int] = Field(description="Ids rescheduled (first 1,000).")


class SendRequest(NoNulModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"letter": "LowBalanceNotice", "client_id": "client-42", "bypass_conditions": True}
            ]
        },
    )

    letter: str = LETTER_NAME
    client_id: str = CLIENT_ID
    contract_id: str | None = Field(
        None, min_length=1, max_length=100, description="For letters about a contract."
    )
    bypass_conditions: bool = Field(
        False,
        description="Skip the letter's condition (admin bypass). Suppressions still apply.",
    )
    context_overrides: dict[str, Any] | None = Field(
        None,
        description=(
            "Values merged over the enriched context before rendering (for an integration "
            "letter, over its context with its gateway `message`)."
        ),
    )
    event_payload: dict[str, Any] | None = Field(
        None,
        description=(
            "The payload of the letter's triggering event type, for letters built from their "
            "event's data (required by the integration letters: newsletter, CRM, license "
            'usage; e.g. `{"email": "a@example.com", "group": "nda"}` for '
            "NewsletterGroupSubscribe). Validated like an event of that type."
        ),
    )


class SendResult(BaseModel):
    letters: list[LetterOut] = Field(description="Created letters (one per recipient).")
    condition: ConditionOut | None = Field(None, description="The evaluated condition.")


class ConditionOut(BaseModel):
    name: str = Field(examples=["balance_below_threshold"])
    passed: bool
    reason: str | None = Field(None, examples=["balance 150.00 < threshold 500.00"])
    bypassed: bool = False


class Rendered(BaseModel):
    subject: str = Field(examples=["Низкий баланс"])
    html: str
    text: str


class PlannedLetter(BaseModel):
    letter: str = Field(examples=["LowBalanceNotice"])
    action: Literal["schedule", "send_now", "skip"]
    recipient: str | None = None
    channel: str | None = None
    locale: str | None = None
    planned_at: datetime | None = Field(None, description="Due time before quiet hours.")
    send_at: datetime | None = Field(None, description="Due time after quiet hours.")
    quiet_hours_shift: bool = Field(False, description="send_at was moved by quiet hours.")
    expires_at: datetime | None = None
    conditions: list[ConditionOut] = Field(default_factory=list)
    reason: str | None = Field(None, description="Why it would not be scheduled.")
    preview: Rendered | None = None
    render_error: str | None = None
    message: dict[str, Any] | None = Field(
        None,
        description=(
            "An integration letter's gateway message (action, recipients, lists, campaign, "
            "properties): it has no templates, so no preview."
        ),
    )


class CancelledLetter(BaseModel):
    id: int
    letter: str
    client_id: str
    send_at: datetime
    reason: str


class DryRunResult(BaseModel):
    event_type: str = Field(examples=["client.balance_changed"])
    client_id: str
    would_schedule: list[PlannedLetter]
    would_cancel: list[CancelledLetter]
    notes: list[str] = Field(default_factory=list)


class PreviewRequest(NoNulModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"client_id": "client-42", "locale": "ru", "context_overrides": {}}]
        },
    )

    client_id: str | None = Field(
        None, min_length=1, max_length=100, description="Enrich this client's data."
    )
    contract_id: str | None = Field(
        None, min_length=1, max_length=100, description="For letters about a contract."
    )
    locale: Literal["ru", "en"] | None = Field(None, description="Default: the client's locale.")
    context_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Values merged over the context."
    )


class PreviewResult(Rendered):
    letter: str
    locale: str
    context: dict[str, Any]


SendResult.model_rebuild()
