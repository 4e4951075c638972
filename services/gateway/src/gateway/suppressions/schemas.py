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
    status: str = Field(description="The message's current status: delivered|bounced|complained")
    status_changed_at: datetime | None


class StatusChangePage(BaseModel):
    items: list[StatusChangeOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
