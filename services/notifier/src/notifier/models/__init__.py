"""ORM models of the ``notifier`` schema. Import every model module here (alembic reads it)."""

from notifier.models.base import Base
from notifier.models.event import Event, EventStatus
from notifier.models.letter import (
    Attempt,
    AttemptOutcome,
    Letter,
    LetterCancellation,
    LetterOrigin,
    LetterSetting,
    LetterSettingAudit,
    LetterState,
    LetterStatus,
)
from notifier.models.suppression import (
    ALL_SCOPES,
    Suppression,
    SuppressionReason,
    SuppressionSource,
    SyncWatermark,
)
from notifier.models.token import ApiToken

__all__ = [
    "ALL_SCOPES",
    "ApiToken",
    "Attempt",
    "AttemptOutcome",
    "Base",
    "Event",
    "EventStatus",
    "Letter",
    "LetterCancellation",
    "LetterOrigin",
    "LetterSetting",
    "LetterSettingAudit",
    "LetterState",
    "LetterStatus",
    "Suppression",
    "SuppressionReason",
    "SuppressionSource",
    "SyncWatermark",
]
