"""letters schema objects: letters, attempts, letter settings (+ audit), cancellations, states

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "letter_cancellations",
        sa.Column("letter", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("letter", "subject", name=op.f("pk_letter_cancellations")),
        schema="notifier",
    )
    op.create_table(
        "letter_settings",
        sa.Column("letter", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("letter", name=op.f("pk_letter_settings")),
        schema="notifier",
    )
    op.create_table(
        "letter_settings_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("letter", sa.String(length=100), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("old", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("new", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letter_settings_audit")),
        schema="notifier",
    )
    op.create_index(
        "ix_letter_settings_audit_letter",
        "letter_settings_audit",
        ["letter", "changed_at"],
        unique=False,
        schema="notifier",
    )
    op.create_table(
        "letter_states",
        sa.Column("letter", sa.String(length=100), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("armed", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_level", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("letter", "client_id", name=op.f("pk_letter_states")),
        schema="notifier",
    )
    op.create_table(
        "letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=True),
        sa.Column("letter", sa.String(length=100), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("contract_id", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=50), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "sending",
                "sent",
                "failed",
                "cancelled",
                "skipped",
                "expired",
                name="letter_status",
                native_enum=False,
                length=20,
                schema="notifier",
            ),
            nullable=False,
        ),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("dedup_key", sa.String(length=200), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        sa.Column("cancelled_by_event_id", sa.UUID(), nullable=True),
        sa.Column("skip_reason", sa.String(length=200), nullable=True),
        sa.Column("resend_of", sa.BigInteger(), nullable=True),
        sa.Column(
            "origin",
            sa.Enum(
                "event",
                "manual",
                "resend",
                name="letter_origin",
                native_enum=False,
                length=20,
                schema="notifier",
            ),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["resend_of"], ["notifier.letters.id"], name=op.f("fk_letters_resend_of_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letters")),
        sa.UniqueConstraint(
            "event_id", "letter", "recipient", name=op.f("uq_letters_event_id_letter_recipient")
        ),
        schema="notifier",
    )
    op.create_index(
        "ix_letters_client_id_created_at",
        "letters",
        ["client_id", "created_at"],
        unique=False,
        schema="notifier",
    )
    op.create_index(
        "ix_letters_dedup_key",
        "letters",
        ["dedup_key"],
        unique=True,
        schema="notifier",
        postgresql_where=sa.text("dedup_key IS NOT NULL"),
    )
    op.create_index(
        "ix_letters_due",
        "letters",
        ["send_at"],
        unique=False,
        schema="notifier",
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_letters_leased",
        "letters",
        ["lease_until"],
        unique=False,
        schema="notifier",
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_letters_pending_client",
        "letters",
        ["client_id", "letter"],
        unique=False,
        schema="notifier",
        postgresql_where=sa.text("status IN ('scheduled', 'sending')"),
    )
    op.create_index(
        "ix_letters_pending_contract",
        "letters",
        ["contract_id", "letter"],
        unique=False,
        schema="notifier",
        postgresql_where=sa.text("status IN ('scheduled', 'sending')"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("letter_id", sa.BigInteger(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "ok",
                "transient",
                "permanent",
                "skipped",
                name="attempt_outcome",
                native_enum=False,
                length=20,
                schema="notifier",
            ),
            nullable=False,
        ),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["notifier.letters.id"], name=op.f("fk_attempts_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        schema="notifier",
    )
    op.create_index(
        "ix_attempts_letter_id",
        "attempts",
        ["letter_id", "try_number"],
        unique=False,
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_letter_id", table_name="attempts", schema="notifier")
    op.drop_table("attempts", schema="notifier")
    op.drop_index(
        "ix_letters_pending_contract",
        table_name="letters",
        schema="notifier",
        postgresql_where=sa.text("status IN ('scheduled', 'sending')"),
    )
    op.drop_index(
        "ix_letters_pending_client",
        table_name="letters",
        schema="notifier",
        postgresql_where=sa.text("status IN ('scheduled', 'sending')"),
    )
    op.drop_index(
        "ix_letters_leased",
        table_name="letters",
        schema="notifier",
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.drop_index(
        "ix_letters_due",
        table_name="letters",
        schema="notifier",
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.drop_index(
        "ix_letters_dedup_key",
        table_name="letters",
        schema="notifier",
        postgresql_where=sa.text("dedup_key IS NOT NULL"),
    )
    op.drop_index("ix_letters_client_id_created_at", table_name="letters", schema="notifier")
    op.drop_table("letters", schema="notifier")
    op.drop_table("letter_states", schema="notifier")
    op.drop_index(
        "ix_letter_settings_audit_letter", table_name="letter_settings_audit", schema="notifier"
    )
    op.drop_table("letter_settings_audit", schema="notifier")
    op.drop_table("letter_settings", schema="notifier")
    op.drop_table("letter_cancellations", schema="notifier")
