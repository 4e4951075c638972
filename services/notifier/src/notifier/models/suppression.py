"""Addresses the notifier must not write to (by scope), and the watermarks of the gateway feeds."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from notifier.models.base import Base

#: Scope of a suppression that stops every letter to the address.
ALL_SCOPES = "*"


class SuppressionReason(enum.StrEnum):
    unsubscribed = "unsubscribed"
    hard_bounce = "hard_bounce"
    complaint = "complaint"
    manual = "manual"


class SuppressionSource(enum.StrEnum):
    link = "link"  # the signed unsubscribe link (page or RFC 8058 one-click)
    gateway = "gateway"  # pulled from the gateway's feed (provider webhooks)
    operator = "operator"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=20)


class Suppression(Base):
    """One suppressed (address, scope); scope is ``*``, a channel, or a letter name / list."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), doc="lower-cased")
    scope: Mapped[str] = mapped_column(String(100))
    reason: Mapped[SuppressionReason] = mapped_column(
        _enum(SuppressionReason, "suppression_reason")
    )
    source: Mapped[SuppressionSource] = mapped_column(
        _enum(SuppressionSource, "suppression_source")
    )
    detail: Mapped[str | None] = mapped_column(Text, doc="letter id, gateway provider, ...")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("address", "scope"),
        # the operator list's newest-first keyset pages (decision 0108)
        Index("ix_suppressions_created_at_id", "created_at", "id"),
    )


class SyncWatermark(Base):
    """How far a pull feed from the gateway has been read (its newest timestamp seen)."""

    __tablename__ = "sync_watermarks"

    feed: Mapped[str] = mapped_column(String(50), primary_key=True)
    watermark: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
