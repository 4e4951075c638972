from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, String, func
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models.base import Base, JsonText


class LoggedMessage(Base):
    """What the ``log`` provider "sent": the message as it would have gone out."""

    __tablename__ = "logged_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100))
    provider_message_id: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(30))
    message: Mapped[dict[str, Any]] = mapped_column(JsonText)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
