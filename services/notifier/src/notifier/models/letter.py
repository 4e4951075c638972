"""Letters (the outbox / queue), delivery attempts, and the rows that make rules race-proof."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from notifier.models.base import Base


class LetterStatus(enum.StrEnum):
    scheduled = "scheduled"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"
    skipped = "skipped"
    expired = "expired"


class LetterOrigin(enum.StrEnum):
    event = "event"
    manual = "manual"
    resend = "resend"
    repeat = "repeat"  # the next occurrence of a repeating letter (a series)


class AttemptOutcome(enum.StrEnum):
    ok = "ok"
    transient = "transient"
    permanent = "permanent"
    skipped = "skipped"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=20)


class Letter(Base):
    """One letter to one recipient: scheduled -> sending -> sent | failed | ... (DESIGN "Data")."""

    __tablename__ = "letters"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    letter: Mapped[str] = mapped_column(String(100))
    client_id: Mapped[str] = mapped_column(String(100))
    contract_id: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(50))
    recipient: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(10))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[LetterStatus] = mapped_column(_enum(LetterStatus, "letter_status"))
    triggered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), doc="occurred_at of the triggering event (cancellation order)"
    )
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    cancelled_by_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    delivery_status: Mapped[str | None] = mapped_column(
        String(20), doc="delivered|bounced|complained, from the gateway's status feed"
    )
    delivery_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resend_of: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("letters.id"))
    origin: Mapped[LetterOrigin] = mapped_column(_enum(LetterOrigin, "letter_origin"))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("event_id", "letter", "recipient"),
        Index(
            "ix_letters_dedup_key",
            "dedup_key",
            unique=True,
            postgresql_where=text("dedup_key IS NOT NULL"),
        ),
        # the drain's order, and where a pass continues after its last locked row (decision 0105)
        Index("ix_letters_due", "send_at", "id", postgresql_where=text("status = 'scheduled'")),
        Index("ix_letters_leased", "lease_until", postgresql_where=text("status = 'sending'")),
        Index("ix_letters_client_id_created_at", "client_id", "created_at"),
        # the self-referencing FK: without it every deleted letter scanned the table for resends
        Index("ix_letters_resend_of", "resend_of", postgresql_where=text("resend_of IS NOT NULL")),
        Index(
            "ix_letters_pending_client",
            "client_id",
            "letter",
            postgresql_where=text("status IN ('scheduled', 'sending')"),
        ),
        Index(
            "ix_letters_pending_contract",
            "contract_id",
            "letter",
            postgresql_where=text("status IN ('scheduled', 'sending')"),
        ),
    )


class Attempt(Base):
    """One delivery try of a letter (provider responses truncated)."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    letter_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("letters.id"))
    try_number: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[AttemptOutcome] = mapped_column(_enum(AttemptOutcome, "attempt_outcome"))
    status_code: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(100))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_attempts_letter_id", "letter_id", "try_number"),)


class LetterSetting(Base):
    """Per-letter switch and parameter overrides (defaults live in code)."""

    __tablename__ = "letter_settings"

    letter: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(String(100))


class LetterSettingAudit(Base):
    __tablename__ = "letter_settings_audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    letter: Mapped[str] = mapped_column(String(100))
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    old: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (Index("ix_letter_settings_audit_letter", "letter", "changed_at"),)


class LetterCancellation(Base):
    """The latest cancelling event per (letter, subject): a late older trigger is not scheduled.

    ``subject`` is ``client:<id>`` or ``contract:<id>``; ``occurred_at`` only moves forward.
    """

    __tablename__ = "letter_cancellations"

    letter: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LetterState(Base):
    """Frequency state of a stateful letter per client: armed flag and last firing."""

    __tablename__ = "letter_states"

    letter: Mapped[str] = mapped_column(String(100), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    armed: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_level: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
