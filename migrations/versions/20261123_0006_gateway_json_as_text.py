"""gateway.messages.request and gateway.logged_messages.message as text (decision 0055)

Revision ID: 0006
Revises: 0005 (0004 while 0005 is not in the tree)
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
# 0005 is written in parallel (issue 7); chain after it once it exists.
down_revision: str | Sequence[str] | None = (
    "0005" if any(Path(__file__).parent.glob("20261123_0005_*.py")) else "0004"
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("messages", "request"), ("logged_messages", "message"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            schema="gateway",
            type_=sa.Text(),
            existing_type=postgresql.JSONB(),
            existing_nullable=False,
            postgresql_using=f"{column}::text",
        )


def downgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(
            table,
            column,
            schema="gateway",
            type_=postgresql.JSONB(),
            existing_type=sa.Text(),
            existing_nullable=False,
            postgresql_using=f"{column}::jsonb",
        )
