from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models.base import Base

#: Scope of a suppression that stops every message to the address.
ALL_SCOPES = "*"


class Suppression(Base):
    """An address the gateway must not send to, in a scope (``*``, a channel or a list)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), doc="lowercased")
    scope: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(30), doc="hard_bounce|complaint|unsubscribe|manual")
    source: Mapped[str] = mapped_column(String(100), doc="provider name or operator")
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("address", "scope"),
        Index("ix_suppressions_created_at_id", "created_at", "id"),
    )
