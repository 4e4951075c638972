"""ORM models of the ``gateway`` schema. Import every model module here (alembic reads it)."""

from gateway.models.base import Base
from gateway.models.logged_message import LoggedMessage
from gateway.models.message import MessageRecord, MessageStatus
from gateway.models.provider_event import ProviderEvent
from gateway.models.suppression import ALL_SCOPES, Suppression
from gateway.models.switch import ProviderSwitch, ProviderSwitchChange
from gateway.models.token import ApiToken

__all__ = [
    "ALL_SCOPES",
    "ApiToken",
    "Base",
    "LoggedMessage",
    "MessageRecord",
    "MessageStatus",
    "ProviderEvent",
    "ProviderSwitch",
    "ProviderSwitchChange",
    "Suppression",
]
