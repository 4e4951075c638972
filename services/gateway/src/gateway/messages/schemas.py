"""Request and response bodies of the messages API (the contract the notifier codes against).

``Message`` (the body of one message) is the provider interface's model, re-exported here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from notifier_common.text import NoNul
from pydantic import BaseModel, ConfigDict, Field

from gateway.models import MessageStatus
from gateway.providers.base import Message, Outcome, Recipient

__all__ = [
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "Message",
    "MessageOut",
    "MessagePage",
    "Outcome",
    "Recipient",
    "SendResultOut",
]

IdempotencyKey = Field(min_length=1, max_length=255, examples=["letter:8f0c6f5e"])


class SendResultOut(BaseModel):
    """The outcome of sending one message (new, or the stored result of an earlier request)."""

    idempotency_key: str
    message_id: uuid.UUID | None = Field(
        description="Gateway message id; null only when the key was reused with another body."
    )
    outcome: Outcome = Field(
        description="accepted | transient_error (retry later, same key) | permanent_error "
        "(never retry) | skipped (code `disabled` or `suppressed`)."
    )
    provider: str | None = Field(None, description="Provider instance that handled it.")
    provider_message_id: str | None = None
    code: str | None = Field(
        None,
        description="Machine-readable reason: e.g. disabled, suppressed, rate_limited, "
        "circuit_open, internal, timeout, in_progress, idempotency_conflict, not_found, "
        "unexpected_response, unknown_provider, http_4xx/5xx.",
    )
    reason: str | None = None
    retry_after: float | None = Field(None, description="Seconds; a hint for transient errors.")
    status_code: int | None = Field(
        None, description="The provider's status code, or 422 for idempotency_conflict."
    )


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A U+0000 in the key is a 422 naming it (decision 0094): checked on this one field, not
    #: with ``NoNulModel`` (which would call a validator per field of each of 500 items). The
    #: message's strings are stored as JSON text, where U+0000 is only an escape.
    idempotency_key: Annotated[str, IdempotencyKey, NoNul]
    message: Message


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, description="Up to 500 items (413 above).")


class BatchResponse(BaseModel):
    results: list[SendResultOut] = Field(description="One per item, in request order.")


class MessageOut(BaseModel):
    """A stored message with its current status (webhooks move accepted -> delivered etc.)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    idempotency_key: str
    channel: str
    action: str
    provider: str | None
    status: MessageStatus
    provider_message_id: str | None
    code: str | None
    reason: str | None
    status_code: int | None
    retry_after: float | None
    response_excerpt: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    status_changed_at: datetime | None
    request: dict[str, Any] = Field(description="The message as received.")


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
