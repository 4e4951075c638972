"""gateway.logged_messages: a message the gateway stored is recorded by reference

The ``log`` provider copied each message's JSON from the claimed ``gateway.messages`` row into
``logged_messages.message`` (decision 0056): ~2.6 KB of compressed request written a second
time per message, and a join on ``gateway.messages`` in every record statement. The row it
copied from is committed before the provider is called and is never deleted, so the record
now names it instead (decision 0111):

- ``message_id uuid``: the ``gateway.messages`` row whose ``request`` is what was "sent";
- ``message`` becomes nullable: it holds the JSON only for a message the gateway changed on
  the way (recipients dropped as suppressed) or a provider writing to another database;
- ``ck_logged_messages_message_or_reference``: one of the two is set.

Rows recorded before keep their copy. Catalogue-only apart from the check's validation (one
scan of the table under a lock that lets writes go on).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_logged_messages_message_or_reference"


def upgrade() -> None:
    op.add_column(
        "logged_messages",
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=True),
        schema="gateway",
    )
    op.alter_column("logged_messages", "message", nullable=True, schema="gateway")
    op.execute(
        f"ALTER TABLE gateway.logged_messages ADD CONSTRAINT {CHECK}"
        " CHECK (message IS NOT NULL OR message_id IS NOT NULL) NOT VALID"
    )
    op.execute(f"ALTER TABLE gateway.logged_messages VALIDATE CONSTRAINT {CHECK}")


def downgrade() -> None:
    # a record by reference gets its copy back before the column goes
    op.execute(
        "UPDATE gateway.logged_messages AS l SET message = m.request"
        " FROM gateway.messages AS m WHERE l.message IS NULL AND m.id = l.message_id"
    )
    op.drop_constraint(CHECK, "logged_messages", schema="gateway", type_="check")
    op.alter_column("logged_messages", "message", nullable=False, schema="gateway")
    op.drop_column("logged_messages", "message_id", schema="gateway")
