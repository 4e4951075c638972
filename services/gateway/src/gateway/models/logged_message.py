from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, String, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, column_property, mapped_column

from gateway.models.base import Base, JsonText
from gateway.models.message import MessageRecord


class LoggedMessage(Base):
    """What the ``log`` provider "sent": the message as it would have gone out.

    A message the gateway stored unchanged is recorded by reference (``message_id``: the
    ``gateway.messages`` row whose request it is); ``message`` holds a copy only when there
    was no such row (decision 0111). ``content`` reads the message either way."""

    __tablename__ = "logged_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100))
    provider_message_id: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(30))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), doc="the gateway.messages row whose request is the message"
    )
    message: Mapped[dict[str, Any] | None] = mapped_column(
        JsonText, doc="the message's JSON when it is not a stored request"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    content: Mapped[dict[str, Any]] = column_property(
        func.coalesce(
            message,
            select(MessageRecord.request).where(MessageRecord.id == message_id).scalar_subquery(),
            type_=JsonText(),
        )
    )

    __table_args__ = (
        CheckConstraint(
            "message IS NOT NULL OR message_id IS NOT NULL", name="message_or_reference"
        ),
    )
