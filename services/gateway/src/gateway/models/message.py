from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Enum, Float, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models.base import Base, JsonText


class MessageStatus(enum.StrEnum):
    in_progress = "in_progress"  # claimed; a provider call may be under way (see lease_until)
    accepted = "accepted"
    transient_error = "transient_error"  # not final: a repeat of the key calls the provider again
    permanent_error = "permanent_error"
    skipped = "skipped"  # code disabled (replayable) or suppressed (final)
    delivered = "delivered"  # from provider webhooks, after accepted
    bounced = "bounced"
    complained = "complained"


class MessageRecord(Base):
    """One message under one idempotency key, with the latest result of sending it."""

    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64), doc="sha256 of the canonical body")
    request: Mapped[dict[str, Any]] = mapped_column(
        JsonText, doc="the compact JSON that was hashed, as text (decision 0055)"
    )
    channel: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(30))
    provider: Mapped[str | None] = mapped_column(String(100))
    recipient: Mapped[str | None] = mapped_column(String(320), doc="first recipient, lowercased")
    status: Mapped[MessageStatus] = mapped_column(
        Enum(MessageStatus, name="message_status", native_enum=False, length=20)
    )
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    retry_after: Mapped[float | None] = mapped_column(Float)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), doc="set per claim; only its owner may store the result"
    )
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="last webhook-driven status change"
    )

    __table_args__ = (
        # partial: the rows the table is full of are never looked up there (decision 0110)
        Index(
            "ix_messages_provider_outcome",
            "provider",
            "status",
            "created_at",
            "id",
            postgresql_where=text("status NOT IN ('in_progress', 'accepted', 'delivered')"),
        ),
        Index(
            "ix_messages_provider_message_id",
            "provider",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        Index("ix_messages_created_at_id", "created_at", "id"),
    )
