"""lz4 compression for the stored request JSON of gateway messages and logged messages

Each message's request (~4.4 KB of JSON for a rendered letter) is compressed when it is
stored; PostgreSQL's default, pglz, spent ~15 ms of CPU per batch of 500 on it in the
benchmark's drain, lz4 ~3 ms for the same rows (decision 0086). Only the compression of values
written from now on changes (rows already stored keep theirs; both are read transparently), so
the change is instant on a table of any size. A server built without lz4 keeps pglz.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows up to this size stay in the table's page as they are (larger ones are compressed first):
#: a compressed request (~2.1 KB with lz4) is kept in line, not moved to the TOAST table, so the
#: log provider's copy and the reads of a message find it in the row.
TUPLE_TARGET = 4080
COLUMNS = (("gateway.messages", "request"), ("gateway.logged_messages", "message"))


def _has_lz4() -> bool:
    return bool(
        op.get_bind().scalar(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
    )


def upgrade() -> None:
    lz4 = _has_lz4()
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} SET (toast_tuple_target = {TUPLE_TARGET})")
        if lz4:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")
        op.execute(f"ALTER TABLE {table} RESET (toast_tuple_target)")
