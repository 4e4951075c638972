"""index on notifier.letters.resend_of (the self-referencing foreign key)

Deleting a letter makes PostgreSQL look for letters that reference it through ``resend_of``;
without an index that is a scan of the whole table per deleted row (found by the benchmark's
``scale`` workload: deleting 20,000 letters next to 1,000,000 took minutes).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_letters_resend_of",
        "letters",
        ["resend_of"],
        schema="notifier",
        postgresql_where=sa.text("resend_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_letters_resend_of", table_name="letters", schema="notifier")
