"""The neutral webhook body every provider (or a small relay in front of it) can send."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["delivered", "bounced", "complained", "unsubscribed"]


class NeutralEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(
        None,
        max_length=255,
        description="Provider's event id: a re-delivered event is applied once.",
    )
    type: EventType
    provider_message_id: str | None = Field(
        None, max_length=255, description="Id the provider returned when accepting the message."
    )
    address: str | None = Field(
        None, max_length=320, description="Recipient; default: the message's first recipient."
    )
    bounce_type: Literal["hard", "soft"] | None = Field(
        None, description="For `bounced`; only hard bounces suppress (default hard)."
    )
    scope: str | None = Field(
        None, max_length=100, description="For `unsubscribed`: list/category, default `*`."
    )
    reason: str | None = Field(None, max_length=2000)
    occurred_at: datetime | None = None


class NeutralBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[NeutralEvent] = Field(min_length=1, max_length=1000)


class WebhookResultOut(BaseModel):
    received: int = Field(description="Events in the body that the gateway understands.")
    ignored: int = Field(description="Events of other types (opens, clicks, ...), not stored.")
    stored: int = Field(description="New events stored.")
    duplicates: int = Field(description="Events already received (same provider event id).")
    messages_updated: int = Field(description="Messages moved to delivered/bounced/complained.")
    suppressions_added: int
