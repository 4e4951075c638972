from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    address: str
    scope: str = Field(description="`*` (everything), a channel, or a list / category name.")
    reason: str = Field(description="hard_bounce | complaint | unsubscribe | manual")
    source: str = Field(description="Provider whose webhook reported it.")
    detail: str | None
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class StatusChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: int = Field(description="The provider event that moved the message.")
    received_at: datetime
    message_id: uuid.UUID
    idempotency_key: str
    status: str = Field(
        description=(
            "The message's current status: delivered|bounced|complained after a webhook; after "
            "a replay (`event` = replayed) also accepted|permanent_error|transient_error|skipped"
        )
    )
    status_changed_at: datetime | None
    event: str = Field(
        description="What moved it: the webhook's delivered|bounced|complained, or `replayed` "
        "(sent by `POST /v1/providers/{name}:replay` after it was answered `skipped: disabled`)."
    )
    provider: str | None = None
    provider_message_id: str | None = None
    code: str | None = Field(None, description="The message's current code (e.g. a failure's).")
    reason: str | None = None


class StatusChangePage(BaseModel):
    items: list[StatusChangeOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
