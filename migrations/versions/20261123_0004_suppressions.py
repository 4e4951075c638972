"""suppressions, sync watermarks, letters.delivery_status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "unsubscribed",
                "hard_bounce",
                "complaint",
                "manual",
                name="suppression_reason",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "source",
            sa.Enum(
                "link",
                "gateway",
                "operator",
                name="suppression_source",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("address", "scope", name=op.f("uq_suppressions_address_scope")),
        schema="notifier",
    )
    op.create_table(
        "sync_watermarks",
        sa.Column("feed", sa.String(length=50), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("feed", name=op.f("pk_sync_watermarks")),
        schema="notifier",
    )
    op.add_column(
        "letters",
        sa.Column("delivery_status", sa.String(length=20), nullable=True),
        schema="notifier",
    )
    op.add_column(
        "letters",
        sa.Column("delivery_updated_at", sa.DateTime(timezone=True), nullable=True),
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_column("letters", "delivery_updated_at", schema="notifier")
    op.drop_column("letters", "delivery_status", schema="notifier")
    op.drop_table("sync_watermarks", schema="notifier")
    op.drop_table("suppressions", schema="notifier")
