from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models.base import Base


class ProviderEvent(Base):
    """A delivery / bounce / complaint / unsubscribe event received from a provider webhook."""

    __tablename__ = "provider_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str | None] = mapped_column(
        String(255), doc="the provider's event id; a re-delivered webhook is stored once"
    )
    type: Mapped[str] = mapped_column(String(30), doc="delivered|bounced|complained|unsubscribed")
    bounce_type: Mapped[str | None] = mapped_column(String(10), doc="hard|soft")
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), doc="gateway message, when the provider message id is known"
    )
    address: Mapped[str | None] = mapped_column(String(320))
    scope: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("provider", "external_id"),
        Index("ix_provider_events_received_at_id", "received_at", "id"),
    )
