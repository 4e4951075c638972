from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from notifier.models import EventStatus


class FieldError(BaseModel):
    loc: str = Field(examples=["payload.new_balance"])
    msg: str = Field(examples=["Field required"])
    type: str = Field(examples=["missing"])


class ItemResult(BaseModel):
    index: int
    id: uuid.UUID = Field(
        description="The event id, or for a rejected item the id of its stored rejection."
    )
    status: Literal["queued", "duplicate", "rejected"]
    errors: list[FieldError] | None = None


class IntakeResponse(BaseModel):
    accepted: int = Field(description="Valid events now queued for processing.")
    duplicates: int = Field(description="Valid events whose id was already queued.")
    rejected: int = Field(description="Invalid events, stored as rejected.")
    results: list[ItemResult]


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str | None
    version: int | None
    client_id: str | None
    producer: str | None
    occurred_at: datetime | None
    trace_id: str | None
    status: EventStatus | Literal["queued"]
    source: str | None = Field(
        description=(
            "Where it was stored: `queue` by a worker (published to the queue directly or by "
            "`POST /v1/events`, which enqueues valid events), `api` when the API rejected it "
            "at intake."
        )
    )
    error: Any | None
    body: dict[str, Any] | None
    received_at: datetime | None
    processed_at: datetime | None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class EventTypeOut(BaseModel):
    type: str = Field(examples=["client.balance_changed"])
    version: int
    json_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema")

    model_config = ConfigDict(populate_by_name=True)


EXAMPLE_EVENT = {
    "id": "3f1c5a0e-8d4b-4c36-9a57-0e0d3a8c2b11",
    "type": "client.balance_changed",
    "version": 1,
    "occurred_at": "2026-11-23T10:15:00+03:00",
    "producer": "corp-billing",
    "client_id": "client-42",
    "payload": {"old_balance": "1200.00", "new_balance": "150.00", "currency": "RUB"},
}
