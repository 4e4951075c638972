"""index on notifier.suppressions (created_at, id): the operator list, newest first

``GET /v1/suppressions`` and ``notifier suppressions list`` page the table newest first by
``(created_at, id)`` (decision 0108); without the index every page sorted the whole table, which
grows by one row per hard bounce, complaint and unsubscribe.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_suppressions_created_at_id",
        "suppressions",
        ["created_at", "id"],
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_index("ix_suppressions_created_at_id", table_name="suppressions", schema="notifier")
