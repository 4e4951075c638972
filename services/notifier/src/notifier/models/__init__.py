"""ORM models of the ``notifier`` schema. Import every model module here (alembic reads it)."""

from notifier.models.base import Base
from notifier.models.event import Event, EventStatus
from notifier.models.token import ApiToken

__all__ = ["ApiToken", "Base", "Event", "EventStatus"]
