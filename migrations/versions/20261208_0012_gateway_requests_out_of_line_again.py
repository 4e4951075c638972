"""gateway.messages: requests go back to the default in-row limit (TOAST beyond ~2 KB)

Migration 0007 raised ``toast_tuple_target`` of ``gateway.messages`` to 4080 so that the ``log``
provider's copy of each request found it in the row (decision 0086). The provider now records a
reference instead of a copy (0011, decision 0111), and a request kept in the row is rewritten
by every later version of the row: the result of each send rewrote ~2.6 KB of compressed
request and its WAL. With the default target the request of a rendered letter is stored once,
in the TOAST table, and the result's row version carries a pointer to it (decision 0112).

Only rows written from now on change; lz4 compression stays.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: decision 0086's value, restored by the downgrade
TUPLE_TARGET = 4080


def upgrade() -> None:
    op.execute("ALTER TABLE gateway.messages RESET (toast_tuple_target)")


def downgrade() -> None:
    op.execute(f"ALTER TABLE gateway.messages SET (toast_tuple_target = {TUPLE_TARGET})")
