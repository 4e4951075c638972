"""ix_letters_due on (send_at, id): the drain's order, and where a pass continues

The drain locks due letters in ``(send_at, id)`` order and continues each pass after the last
row it locked (decision 0105): ``(send_at, id) > (:send_at, :id)`` starts the index scan at
that row instead of stepping again over the rows other batches hold and the entries of rows
sent moments ago. The index was on ``send_at`` alone, where letters due at the same second
(a reminder scheduled for 10:00 for many clients) could not be told apart.

Dropped and built again in the migration's transaction: writes to ``notifier.letters`` wait
while the partial index (scheduled rows only) is built, one scan of the table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEDULED = sa.text("status = 'scheduled'")


def _due_index(columns: list[str]) -> None:
    op.drop_index("ix_letters_due", table_name="letters", schema="notifier")
    op.create_index(
        "ix_letters_due", "letters", columns, schema="notifier", postgresql_where=SCHEDULED
    )


def upgrade() -> None:
    _due_index(["send_at", "id"])


def downgrade() -> None:
    _due_index(["send_at"])
