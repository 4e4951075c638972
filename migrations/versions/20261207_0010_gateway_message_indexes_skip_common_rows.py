"""gateway.messages: the provider-id and status indexes leave out the rows they never find

Two of the five indexes of ``gateway.messages`` took an entry for every message when it was
claimed and another when its result was stored, for rows no query looks up there (decision
0110):

- ``ix_messages_provider_message_id (provider, provider_message_id)`` is read by webhook
  lookups (``provider_message_id = ANY(...)``), which never look for NULL; a claim has no
  provider id yet. Now partial: ``WHERE provider_message_id IS NOT NULL``.
- ``ix_messages_provider_status (provider, status)`` served the replay of ``skipped:
  disabled`` messages and the operators' list filtered by provider and status. In-flight,
  accepted and delivered messages (nearly every row) are the ones the newest-first scan of
  ``ix_messages_created_at_id`` finds at once; the rare outcomes are what needs an index.
  Replaced by ``ix_messages_provider_outcome (provider, status, created_at, id) WHERE status NOT
  IN ('in_progress', 'accepted', 'delivered')``: the replay and the filtered list in their
  own order.

Built in the migration's transaction (writes to the table wait for the two builds, one scan each).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROVIDER_ID_KNOWN = sa.text("provider_message_id IS NOT NULL")
OUTCOME_TO_LOOK_AT = sa.text("status NOT IN ('in_progress', 'accepted', 'delivered')")


def _provider_id_index(where: sa.TextClause | None) -> None:
    op.drop_index("ix_messages_provider_message_id", table_name="messages", schema="gateway")
    op.create_index(
        "ix_messages_provider_message_id",
        "messages",
        ["provider", "provider_message_id"],
        schema="gateway",
        postgresql_where=where,
    )


def upgrade() -> None:
    _provider_id_index(PROVIDER_ID_KNOWN)
    op.drop_index("ix_messages_provider_status", table_name="messages", schema="gateway")
    op.create_index(
        "ix_messages_provider_outcome",
        "messages",
        ["provider", "status", "created_at", "id"],
        schema="gateway",
        postgresql_where=OUTCOME_TO_LOOK_AT,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_provider_outcome", table_name="messages", schema="gateway")
    op.create_index(
        "ix_messages_provider_status", "messages", ["provider", "status"], schema="gateway"
    )
    _provider_id_index(None)
